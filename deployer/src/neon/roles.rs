//! Roles on a branch: read, create, reveal the password, delete; and the paths of a
//! branch's objects, which databases share.

use reqwest::Method;
use serde::Serialize;

use super::client::body;
use super::models::*;
use super::{Neon, NeonError, encode};

/// `RoleCreateRequest`.
#[derive(Serialize)]
struct RoleCreateRequest<'a> {
    role: NewRole<'a>,
}

#[derive(Serialize)]
struct NewRole<'a> {
    name: &'a str,
}

impl Neon {
    // ---- roles and databases --------------------------------------------------------------

    pub(super) fn branch_path(project: &ProjectId, branch: &BranchId) -> String {
        format!("/projects/{project}/branches/{branch}")
    }

    fn role_path(project: &ProjectId, branch: &BranchId, name: &str) -> String {
        format!(
            "{}/roles/{}",
            Self::branch_path(project, branch),
            encode(name)
        )
    }

    pub(super) fn database_path(project: &ProjectId, branch: &BranchId, name: &str) -> String {
        format!(
            "{}/databases/{}",
            Self::branch_path(project, branch),
            encode(name)
        )
    }

    pub async fn get_role(
        &self,
        project: &ProjectId,
        branch: &BranchId,
        name: &str,
    ) -> Result<Role, NeonError> {
        let answer: RoleResponse = self.get(&Self::role_path(project, branch, name)).await?;
        Ok(answer.role)
    }

    pub async fn create_role(
        &self,
        project: &ProjectId,
        branch: &BranchId,
        name: &str,
    ) -> Result<Role, NeonError> {
        let path = format!("{}/roles", Self::branch_path(project, branch));
        let answer: RoleResponse = self
            .change(
                Method::POST,
                &path,
                Some(&body(&RoleCreateRequest {
                    role: NewRole { name },
                })),
            )
            .await?;
        Ok(answer.role)
    }

    pub async fn reveal_password(
        &self,
        project: &ProjectId,
        branch: &BranchId,
        name: &str,
    ) -> Result<String, NeonError> {
        let path = format!("{}/reveal_password", Self::role_path(project, branch, name));
        let answer: RolePasswordResponse = self.get(&path).await?;
        Ok(answer.password)
    }

    pub async fn delete_role(
        &self,
        project: &ProjectId,
        branch: &BranchId,
        name: &str,
    ) -> Result<(), NeonError> {
        self.delete(&Self::role_path(project, branch, name)).await
    }
}
