//! Compute endpoints: list, read, create, delete.

use reqwest::Method;
use serde::Serialize;

use super::client::body;
use super::models::*;
use super::{Neon, NeonError};

/// `EndpointCreateRequest`.
#[derive(Serialize)]
struct EndpointCreateRequest<'a> {
    endpoint: NewEndpoint<'a>,
}

#[derive(Serialize)]
struct NewEndpoint<'a> {
    branch_id: &'a BranchId,
    #[serde(rename = "type")]
    kind: &'a EndpointType,
}

impl Neon {
    // ---- endpoints ----------------------------------------------------------------------

    pub async fn list_endpoints(&self, project: &ProjectId) -> Result<Vec<Endpoint>, NeonError> {
        let answer: EndpointsResponse = self.get(&format!("/projects/{project}/endpoints")).await?;
        Ok(answer.endpoints)
    }

    pub async fn get_endpoint(
        &self,
        project: &ProjectId,
        id: &EndpointId,
    ) -> Result<Endpoint, NeonError> {
        let answer: EndpointResponse = self
            .get(&format!("/projects/{project}/endpoints/{id}"))
            .await?;
        Ok(answer.endpoint)
    }

    pub async fn create_endpoint(
        &self,
        project: &ProjectId,
        branch: &BranchId,
        kind: &EndpointType,
    ) -> Result<Endpoint, NeonError> {
        let answer: EndpointResponse = self
            .change(
                Method::POST,
                &format!("/projects/{project}/endpoints"),
                Some(&body(&EndpointCreateRequest {
                    endpoint: NewEndpoint {
                        branch_id: branch,
                        kind,
                    },
                })),
            )
            .await?;
        Ok(answer.endpoint)
    }

    pub async fn delete_endpoint(
        &self,
        project: &ProjectId,
        id: &EndpointId,
    ) -> Result<(), NeonError> {
        self.delete(&format!("/projects/{project}/endpoints/{id}"))
            .await
    }
}
