//! Databases on a branch: list, read, create, update, delete, and the connection URI for
//! a role and database.

use reqwest::Method;
use serde::Serialize;

use super::client::body;
use super::models::*;
use super::{Neon, NeonError, encode};

/// `DatabaseCreateRequest`.
#[derive(Serialize)]
struct DatabaseCreateRequest<'a> {
    database: NewDatabase<'a>,
}

#[derive(Serialize)]
struct NewDatabase<'a> {
    name: &'a str,
    owner_name: &'a str,
}

/// `DatabaseUpdateRequest.database`: only the fields given are changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DatabaseUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_name: Option<String>,
}

#[derive(Serialize)]
struct DatabaseUpdateRequest<'a> {
    database: &'a DatabaseUpdate,
}

impl Neon {
    pub async fn list_databases(
        &self,
        project: &ProjectId,
        branch: &BranchId,
    ) -> Result<Vec<Database>, NeonError> {
        let answer: DatabasesResponse = self
            .get(&format!("{}/databases", Self::branch_path(project, branch)))
            .await?;
        Ok(answer.databases)
    }

    pub async fn get_database(
        &self,
        project: &ProjectId,
        branch: &BranchId,
        name: &str,
    ) -> Result<Database, NeonError> {
        let answer: DatabaseResponse = self
            .get(&Self::database_path(project, branch, name))
            .await?;
        Ok(answer.database)
    }

    pub async fn create_database(
        &self,
        project: &ProjectId,
        branch: &BranchId,
        name: &str,
        owner: &str,
    ) -> Result<Database, NeonError> {
        let path = format!("{}/databases", Self::branch_path(project, branch));
        let request = DatabaseCreateRequest {
            database: NewDatabase {
                name,
                owner_name: owner,
            },
        };
        let answer: DatabaseResponse = self
            .change(Method::POST, &path, Some(&body(&request)))
            .await?;
        Ok(answer.database)
    }

    pub async fn update_database(
        &self,
        project: &ProjectId,
        branch: &BranchId,
        name: &str,
        patch: &DatabaseUpdate,
    ) -> Result<(), NeonError> {
        self.change::<Operations>(
            Method::PATCH,
            &Self::database_path(project, branch, name),
            Some(&body(&DatabaseUpdateRequest { database: patch })),
        )
        .await
        .map(drop)
    }

    pub async fn delete_database(
        &self,
        project: &ProjectId,
        branch: &BranchId,
        name: &str,
    ) -> Result<(), NeonError> {
        self.delete(&Self::database_path(project, branch, name))
            .await
    }

    /// The connection URI for a role and database through the branch's read-write endpoint.
    pub async fn connection_uri(
        &self,
        project: &ProjectId,
        branch: &BranchId,
        database: &str,
        role: &str,
        pooled: bool,
    ) -> Result<String, NeonError> {
        let path = format!(
            "/projects/{project}/connection_uri?branch_id={}&database_name={}&role_name={}&pooled={pooled}",
            encode(&branch.0),
            encode(database),
            encode(role)
        );
        let answer: ConnectionUriResponse = self.get(&path).await?;
        Ok(secure_uri(&answer.uri))
    }
}

/// A Neon connection string as the deployer writes it: `sslmode=verify-full` with
/// `sslrootcert=system` (Neon's certificates are publicly trusted, and Neon's docs
/// recommend verifying them: a machine in the middle then cannot read the password, even
/// where channel binding is not negotiated), and `sslnegotiation=direct` (Neon's proxy
/// takes TLS first, which saves the `SSLRequest` round trip on every new connection; it
/// needs libpq 17, or the api). A URI that asks for no TLS (`sslmode=disable`) or already
/// says how to verify is left as it is.
pub fn secure_uri(uri: &str) -> String {
    let (base, query) = uri.split_once('?').unwrap_or((uri, ""));
    let mut params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let get = |params: &[(String, String)], key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    match get(&params, "sslmode").as_deref() {
        None | Some("require" | "prefer" | "allow") => {}
        Some(_) => return uri.to_owned(),
    }
    if get(&params, "sslrootcert").is_some() {
        return uri.to_owned();
    }
    params.retain(|(k, _)| k != "sslmode");
    params.insert(0, ("sslmode".to_owned(), "verify-full".to_owned()));
    params.push(("sslrootcert".to_owned(), "system".to_owned()));
    if get(&params, "sslnegotiation").is_none() {
        params.push(("sslnegotiation".to_owned(), "direct".to_owned()));
    }
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{base}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::secure_uri;

    #[test]
    fn neon_uris_verify_the_server_and_take_tls_first() {
        assert_eq!(
            secure_uri(
                "postgresql://u:p@ep-x.us-east-2.aws.neon.tech/neondb?sslmode=require&channel_binding=require"
            ),
            "postgresql://u:p@ep-x.us-east-2.aws.neon.tech/neondb?sslmode=verify-full&channel_binding=require&sslrootcert=system&sslnegotiation=direct"
        );
        assert_eq!(
            secure_uri("postgresql://u:p@h/db"),
            "postgresql://u:p@h/db?sslmode=verify-full&sslrootcert=system&sslnegotiation=direct"
        );
        for kept in [
            "postgresql://u:p@localhost:5432/db?sslmode=disable",
            "postgresql://u:p@h/db?sslmode=verify-ca&sslrootcert=/etc/ca.pem",
        ] {
            assert_eq!(secure_uri(kept), kept);
        }
    }
}
