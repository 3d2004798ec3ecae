//! Projects: create (waiting for its operations), find by name, read, update, delete.

use std::time::Duration;

use reqwest::Method;
use serde::Serialize;

use super::client::body;
use super::models::*;
use super::{Neon, NeonError, encode};

/// Listings asked again while Neon's answer names unavailable projects: about 5 s in all.
const LIST_ATTEMPTS: u32 = 5;

/// `ProjectCreateRequest.project`: what the deployer sets on a new project.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NewProject {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_retention_seconds: Option<i64>,
}

/// `ProjectUpdateRequest.project`: only the fields given are changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProjectUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_retention_seconds: Option<i64>,
}

#[derive(Serialize)]
struct ProjectRequest<'a, T> {
    project: &'a T,
}

impl Neon {
    // ---- projects -----------------------------------------------------------------------

    /// Creates a project and waits for its operations. A project whose operations fail
    /// exists nonetheless: its ID comes back with the error, for the caller to record.
    pub async fn create_project(
        &self,
        project: &NewProject,
    ) -> Result<CreatedProject, (Option<ProjectId>, NeonError)> {
        let body = body(&ProjectRequest { project });
        let (created, ops): (CreatedProject, _) = self
            .start_change(Method::POST, "/projects", Some(&body))
            .await
            .map_err(|e| (None, e))?;
        self.wait_for(&ops.operations)
            .await
            .map_err(|e| (Some(created.project.id.clone()), e))?;
        Ok(created)
    }

    /// Projects whose name contains `name` (Neon searches by substring), every page. With
    /// `org_id`, the organization's projects: an account in an organization must name it
    /// (Neon answers 400 "org_id is required" to a personal key otherwise).
    ///
    /// A list naming `unavailable_project_ids` is incomplete: those projects exist, and any
    /// may be the one looked for (an uncertain create's). It is asked again, with back-off,
    /// and if it stays incomplete that is an error, never "absent" (which would create a
    /// second project).
    pub async fn find_projects(
        &self,
        name: &str,
        org_id: Option<&str>,
    ) -> Result<Vec<Project>, NeonError> {
        let mut delay = Duration::from_millis(250);
        for _ in 0..LIST_ATTEMPTS {
            let (found, unavailable) = self.list_projects(name, org_id).await?;
            if unavailable.is_empty() {
                return Ok(found);
            }
            tracing::info!(
                ?unavailable,
                "Neon's project list was incomplete; asking again"
            );
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(4));
        }
        let (found, unavailable) = self.list_projects(name, org_id).await?;
        if unavailable.is_empty() {
            return Ok(found);
        }
        Err(NeonError::Incomplete {
            what: format!("the projects named like `{name}`"),
            unavailable: unavailable.into_iter().map(|p| p.0).collect(),
        })
    }

    /// One listing, every page: the projects, and those Neon could not describe.
    async fn list_projects(
        &self,
        name: &str,
        org_id: Option<&str>,
    ) -> Result<(Vec<Project>, Vec<ProjectId>), NeonError> {
        let mut unavailable = Vec::new();
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/projects?search={}&limit=400", encode(name));
            if let Some(org) = org_id {
                path.push_str(&format!("&org_id={}", encode(org)));
            }
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={}", encode(c)));
            }
            let page: ProjectsResponse = self.get(&path).await?;
            let full = page.projects.len() == 400;
            all.extend(page.projects);
            unavailable.extend(page.unavailable_project_ids);
            match page.pagination {
                Some(p) if full && !p.cursor.is_empty() && cursor.as_ref() != Some(&p.cursor) => {
                    cursor = Some(p.cursor)
                }
                _ => return Ok((all, unavailable)),
            }
        }
    }

    pub async fn get_project(&self, id: &ProjectId) -> Result<Project, NeonError> {
        let answer: ProjectResponse = self.get(&format!("/projects/{id}")).await?;
        Ok(answer.project)
    }

    pub async fn update_project(
        &self,
        id: &ProjectId,
        patch: &ProjectUpdate,
    ) -> Result<(), NeonError> {
        self.change::<Operations>(
            Method::PATCH,
            &format!("/projects/{id}"),
            Some(&body(&ProjectRequest { project: patch })),
        )
        .await
        .map(drop)
    }

    /// Deletes a project; one already gone counts as deleted.
    pub async fn delete_project(&self, id: &ProjectId) -> Result<(), NeonError> {
        self.delete(&format!("/projects/{id}")).await
    }
}
