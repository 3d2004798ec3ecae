//! Branches: list with their annotations, read, create, update, delete.

use std::collections::BTreeMap;

use reqwest::Method;
use serde::Serialize;

use super::client::body;
use super::models::*;
use super::{Neon, NeonError, encode};

/// `BranchCreateRequest`: the branch, the endpoints made with it, its annotation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BranchCreateRequest {
    pub branch: NewBranch,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<NewBranchEndpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotation_value: Option<BTreeMap<String, String>>,
}

/// `BranchCreateRequest.branch`. Neon starts a branch from the default branch when
/// `parent_id` is left out; `parent_lsn` and `parent_timestamp` pick a point in its history.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NewBranch {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<BranchId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_lsn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_timestamp: Option<String>,
    /// `schema-only`: the tables, none of the rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_source: Option<String>,
    /// RFC 3339; an Early Access field of the API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// `BranchCreateRequestEndpointOptions`.
#[derive(Debug, Clone, Serialize)]
pub struct NewBranchEndpoint {
    #[serde(rename = "type")]
    pub kind: EndpointType,
}

/// `BranchUpdateRequest.branch`: only the fields given are changed; `expires_at:
/// Some(None)` sends `null`, which removes the expiry.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BranchUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Option<String>>,
}

#[derive(Serialize)]
struct BranchUpdateRequest<'a> {
    branch: &'a BranchUpdate,
}

impl Neon {
    // ---- branches -----------------------------------------------------------------------

    pub async fn list_branches(&self, project: &ProjectId) -> Result<Vec<Branch>, NeonError> {
        Ok(self.list_annotated_branches(project).await?.0)
    }

    /// Every branch of the project with its annotation (empty where it has none), through
    /// every page.
    pub async fn list_annotated_branches(
        &self,
        project: &ProjectId,
    ) -> Result<(Vec<Branch>, BTreeMap<String, Annotation>), NeonError> {
        let (mut branches, mut annotations) = (Vec::new(), BTreeMap::new());
        let mut path = format!("/projects/{project}/branches");
        loop {
            let answer: BranchesResponse = self.get(&path).await?;
            let empty = answer.branches.is_empty();
            branches.extend(answer.branches);
            annotations.extend(answer.annotations);
            match answer.pagination.and_then(|p| p.next) {
                Some(next) if !empty => {
                    path = format!("/projects/{project}/branches?cursor={}", encode(&next));
                }
                _ => return Ok((branches, annotations)),
            }
        }
    }

    pub async fn get_branch(
        &self,
        project: &ProjectId,
        id: &BranchId,
    ) -> Result<Branch, NeonError> {
        let answer: BranchResponse = self
            .get(&format!("/projects/{project}/branches/{id}"))
            .await?;
        Ok(answer.branch)
    }

    /// A branch create with every part of Neon's request: `branch`, `endpoints` and
    /// `annotation_value` (`createProjectBranch`).
    pub async fn create_branch(
        &self,
        project: &ProjectId,
        request: &BranchCreateRequest,
    ) -> Result<CreatedBranch, NeonError> {
        self.change(
            Method::POST,
            &format!("/projects/{project}/branches"),
            Some(&body(request)),
        )
        .await
        .map_err(|e| expiry_refused(e, request.branch.expires_at.is_some()))
    }

    pub async fn update_branch(
        &self,
        project: &ProjectId,
        id: &BranchId,
        patch: &BranchUpdate,
    ) -> Result<(), NeonError> {
        self.change::<Operations>(
            Method::PATCH,
            &format!("/projects/{project}/branches/{id}"),
            Some(&body(&BranchUpdateRequest { branch: patch })),
        )
        .await
        .map(drop)
        .map_err(|e| expiry_refused(e, matches!(patch.expires_at, Some(Some(_)))))
    }

    /// The schema difference of `database` between the branch's parent and the branch
    /// (`getProjectBranchSchemaComparison`, what Neon's schema diff shows).
    pub async fn compare_schema(
        &self,
        project: &ProjectId,
        id: &BranchId,
        database: &str,
    ) -> Result<String, NeonError> {
        let answer: BranchSchemaCompareResponse = self
            .get(&format!(
                "/projects/{project}/branches/{id}/compare_schema?db_name={}",
                encode(database)
            ))
            .await?;
        Ok(answer.diff)
    }

    pub async fn delete_branch(&self, project: &ProjectId, id: &BranchId) -> Result<(), NeonError> {
        self.delete(&format!("/projects/{project}/branches/{id}"))
            .await
    }
}

/// A 400 to a request that set `expires_at`, which the spec marks Early Access: an account
/// outside the programme is refused it. Said as such, so the user hears of `expires_in`.
fn expiry_refused(e: NeonError, sent_expiry: bool) -> NeonError {
    match e {
        NeonError::Api { status: 400, .. } if sent_expiry => NeonError::ExpiryRefused {
            source: Box::new(e),
        },
        e => e,
    }
}
