//! Advice about a configuration that is valid but likely not what a scaling app wants.

use super::{Config, FunctionSpec, Kind, LinkSpec, Part, Spec};

impl Config {
    /// One line per link property a function sees that is a Neon connection string
    /// straight to the compute, where the pooler's would serve a function that scales
    /// out: each Lambda instance holds its own connection, and a compute takes a few
    /// hundred at most (about 100 at 0.25 CU) where Neon's pooler (PgBouncer in
    /// transaction mode) takes 10,000 clients. A link with `pooler_hint = false` is left
    /// alone.
    pub fn pooler_notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        for function in &self.resources {
            let Spec::Function(FunctionSpec { links, .. }) = &function.spec else {
                continue;
            };
            for link in links {
                let Some(Spec::Link(LinkSpec {
                    properties,
                    pooler_hint: true,
                })) = self.resource(link).map(|r| &r.spec)
                else {
                    continue;
                };
                for (property, template) in properties {
                    for part in &template.0 {
                        let Part::Ref { resource, output } = part else {
                            continue;
                        };
                        let is_neon_uri = output == "connection_uri"
                            && self.resource(resource).is_some_and(|r| {
                                matches!(r.kind, Kind::Project | Kind::Preview | Kind::Database)
                            });
                        if is_neon_uri {
                            notes.push(format!(
                                "{} links {link}.{property} = ${{{resource}.connection_uri}}, a direct connection (a compute takes about 100 at 0.25 CU); a function that scales out should link ${{{resource}.connection_uri_pooler}} (Neon's pooler, 10,000 clients), or set pooler_hint = false in [link.{link}]",
                                function.name
                            ));
                        }
                    }
                }
            }
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use crate::env::EnvSource;

    fn notes(text: &str) -> Vec<String> {
        let config = crate::config::parse(
            std::path::Path::new("infra.toml"),
            text,
            &EnvSource::default(),
        )
        .expect("a valid config");
        config.pooler_notes()
    }

    const APP: &str = r#"
[app]
name = "a"
region = "us-east-1"

[neon.project.P]
name = "p"
region_id = "aws-us-east-1"

[function.F]
package = "api"
link = ["L"]
"#;

    #[test]
    fn a_direct_uri_gets_a_note_naming_the_pooled_output_and_the_silencer() {
        let n = notes(&format!(
            "{APP}\n[link.L]\nconnection_string = \"${{P.connection_uri}}\"\n"
        ));
        assert_eq!(n.len(), 1, "{n:?}");
        assert!(n[0].starts_with("F links L.connection_string"), "{}", n[0]);
        assert!(n[0].contains("${P.connection_uri_pooler}"), "{}", n[0]);
        assert!(n[0].contains("pooler_hint = false in [link.L]"), "{}", n[0]);
    }

    #[test]
    fn the_pooled_uri_or_a_silenced_link_gets_none() {
        let pooled = notes(&format!(
            "{APP}\n[link.L]\nconnection_string = \"${{P.connection_uri_pooler}}\"\n"
        ));
        assert!(pooled.is_empty(), "{pooled:?}");
        let silenced = notes(&format!(
            "{APP}\n[link.L]\nconnection_string = \"${{P.connection_uri}}\"\npooler_hint = false\n"
        ));
        assert!(silenced.is_empty(), "{silenced:?}");
    }
}
