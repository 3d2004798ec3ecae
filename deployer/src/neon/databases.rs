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
        Ok(answer.uri)
    }
}
