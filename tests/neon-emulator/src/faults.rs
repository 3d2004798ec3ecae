//! Fault injection: random faults at a seeded rate, and scripted ones ("fail the next N
//! calls matching METHOD PATH with STATUS").

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::util::Rng;

/// Random faults: each API call fails with probability `rate`, with a status drawn from
/// `statuses` (429 answers carry `Retry-After`).
#[derive(Debug, Clone)]
pub struct RandomFaults {
    pub rate: f64,
    pub seed: u64,
    pub statuses: Vec<u16>,
    /// Share of injected 5xx faults on mutating calls that are returned *after* the change
    /// was applied, as when a response is lost: a client that retries blindly creates twice.
    pub applied_share: f64,
}

impl Default for RandomFaults {
    fn default() -> Self {
        RandomFaults {
            rate: 0.0,
            seed: 0,
            statuses: vec![429, 500, 503],
            applied_share: 0.0,
        }
    }
}

/// "Fail the next `count` calls matching `method` `path` with `status`". `path` is relative
/// to `/api/v2`; a `*` segment matches any one segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptedFault {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub count: u32,
    /// Apply the change, then answer with the fault (a reply lost after Neon did it).
    #[serde(default)]
    pub after_apply: bool,
}

impl ScriptedFault {
    pub fn matches(&self, method: &str, path: &str) -> bool {
        if !self.method.eq_ignore_ascii_case(method) && self.method != "*" {
            return false;
        }
        let want: Vec<&str> = self.path.trim_matches('/').split('/').collect();
        let got: Vec<&str> = path.trim_matches('/').split('/').collect();
        want.len() == got.len() && want.iter().zip(&got).all(|(w, g)| *w == "*" || w == g)
    }
}

/// `POST /projects/*/branches 503 x2` (the count is optional, default 1; a last word
/// `applied` makes the change before answering with the fault).
impl FromStr for ScriptedFault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split_whitespace().collect();
        let usage = || {
            format!(
                "`{s}`: expected `METHOD PATH STATUS [xCOUNT]`, e.g. `POST /projects/*/branches 503 x2`"
            )
        };
        let after_apply = parts.last() == Some(&"applied");
        let parts = &parts[..parts.len() - usize::from(after_apply)];
        let (method, path, status) = match parts {
            [m, p, s] | [m, p, s, _] => (m, p, s),
            _ => return Err(usage()),
        };
        let status: u16 = status.parse().map_err(|_| usage())?;
        let count = match parts.get(3) {
            None => 1,
            Some(c) => c.trim_start_matches('x').parse().map_err(|_| usage())?,
        };
        Ok(ScriptedFault {
            method: method.to_ascii_uppercase(),
            path: path.to_string(),
            status,
            count,
            after_apply,
        })
    }
}

/// A fault decided for one call.
#[derive(Debug, Clone, Copy)]
pub struct Fault {
    pub status: u16,
    /// Apply the change, then answer with the fault.
    pub after_apply: bool,
}

pub struct Faults {
    random: RandomFaults,
    rng: Rng,
    scripted: Vec<ScriptedFault>,
}

impl Faults {
    pub fn new(random: RandomFaults, scripted: Vec<ScriptedFault>) -> Self {
        Faults {
            rng: Rng::new(random.seed),
            random,
            scripted,
        }
    }

    pub fn script(&mut self, fault: ScriptedFault) {
        self.scripted.push(fault);
    }

    pub fn set_random(&mut self, random: RandomFaults) {
        self.rng = Rng::new(random.seed);
        self.random = random;
    }

    /// Decides whether this call fails, consuming a scripted fault if one matches.
    pub fn decide(&mut self, method: &str, path: &str, mutating: bool) -> Option<Fault> {
        if let Some(i) = self.scripted.iter().position(|f| f.matches(method, path)) {
            let (status, after_apply) = (self.scripted[i].status, self.scripted[i].after_apply);
            self.scripted[i].count -= 1;
            if self.scripted[i].count == 0 {
                self.scripted.remove(i);
            }
            return Some(Fault {
                status,
                after_apply: after_apply && mutating,
            });
        }
        if self.random.statuses.is_empty() || !self.rng.chance(self.random.rate) {
            return None;
        }
        let status = self.random.statuses[self.rng.below(self.random.statuses.len())];
        let after_apply = mutating && status >= 500 && self.rng.chance(self.random.applied_share);
        Some(Fault {
            status,
            after_apply,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_faults_parse_and_match_wildcards() {
        let f: ScriptedFault = "post /projects/*/branches 503 x2".parse().unwrap();
        assert_eq!(f.count, 2);
        assert!(f.matches("POST", "/projects/abc/branches"));
        assert!(!f.matches("GET", "/projects/abc/branches"));
        assert!(!f.matches("POST", "/projects/abc/branches/br-1"));
        assert!("POST /projects".parse::<ScriptedFault>().is_err());
        let applied: ScriptedFault = "POST /projects 500 applied".parse().unwrap();
        assert!(applied.after_apply && applied.count == 1);
        assert!(!f.after_apply);
    }

    #[test]
    fn scripted_faults_are_used_up() {
        let mut faults = Faults::new(
            RandomFaults::default(),
            vec!["POST /projects 500 x2".parse().unwrap()],
        );
        assert!(faults.decide("POST", "/projects", true).is_some());
        assert!(faults.decide("POST", "/projects", true).is_some());
        assert!(faults.decide("POST", "/projects", true).is_none());
    }
}
