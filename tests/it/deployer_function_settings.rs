//! A function's settings that organisations and public URLs need, against what real AWS
//! does: `reserved_concurrency` (a cap on what a public URL can take of the account), and
//! `[app] tags` and `role_permissions_boundary` (what SCPs may require), each set, changed,
//! noticed by `refresh` where it drifts, and removed with its key.

use harness::deploy::{DeployStack, temp_config};
use harness::fixtures::{self, GUIDE_HONO};

const FUNCTION: &str = "aws-hono-real-MyApi";

async fn reserved(stack: &DeployStack) -> Option<i32> {
    stack
        .lambda
        .get_function_concurrency()
        .function_name(FUNCTION)
        .send()
        .await
        .unwrap()
        .reserved_concurrent_executions()
}

/// `reserved_concurrency` caps what a public URL can take of the account's concurrency
/// (and of Neon's connections): set, changed, noticed by `refresh` when changed by hand,
/// and removed with the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_concurrency_is_set_changed_refreshed_and_removed() {
    let stack = DeployStack::start(|_| {}).await;
    let (_dir, capped) = temp_config(fixtures::guide_with_function_lines(
        "reserved_concurrency = 5",
    ));
    stack
        .run(&capped, &["deploy", "--stage", "real"])
        .await
        .ok();
    assert_eq!(reserved(&stack).await, Some(5));

    stack
        .lambda
        .put_function_concurrency()
        .function_name(FUNCTION)
        .reserved_concurrent_executions(50)
        .send()
        .await
        .unwrap();
    let refreshed = stack
        .run(&capped, &["refresh", "--stage", "real"])
        .await
        .ok();
    assert!(
        refreshed
            .stdout
            .contains("reserved_concurrency: 5 (recorded) -> 50 (live)"),
        "{}",
        refreshed.stdout
    );

    let (_dir2, raised) = temp_config(fixtures::guide_with_function_lines(
        "reserved_concurrency = 20",
    ));
    let diff = stack.run(&raised, &["diff", "--stage", "real"]).await.ok();
    assert!(
        diff.stdout.contains("reserved_concurrency"),
        "{}",
        diff.stdout
    );
    stack
        .run(&raised, &["deploy", "--stage", "real"])
        .await
        .ok();
    assert_eq!(reserved(&stack).await, Some(20));

    let (_dir3, uncapped) = temp_config(fixtures::guide_with_function_lines(""));
    let removed = stack
        .run(&uncapped, &["deploy", "--stage", "real"])
        .await
        .ok();
    assert!(removed.stdout.contains("Updated"), "{}", removed.stdout);
    assert_eq!(reserved(&stack).await, None);
    stack.assert_no_changes(&uncapped, "real").await;
}

/// `[app] tags` land on the function, its role and its log group, and a permissions
/// boundary on the role, as organisations' SCPs require; a change of either converges, and
/// removing the boundary's key removes the boundary the deployer set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_a_permissions_boundary_reach_the_role_function_and_log_group() {
    let stack = DeployStack::start(|_| {}).await;
    let boundary = stack
        .iam
        .create_policy()
        .policy_name("DeveloperBoundary")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"logs:*","Resource":"*"}]}"#)
        .send()
        .await
        .unwrap()
        .policy()
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();
    let with = |tags: &str, boundary: &str| {
        fixtures::read(GUIDE_HONO)
            .with(
                "region = \"us-east-1\"\n",
                &format!("region = \"us-east-1\"\ntags = {tags}\n"),
            )
            .with("url = true\n", &format!("url = true\n{boundary}\n"))
    };
    let (_dir, tagged) = temp_config(with(
        r#"{ team = "payments", "cost-center" = "42" }"#,
        &format!("role_permissions_boundary = \"{boundary}\""),
    ));
    stack
        .run(&tagged, &["deploy", "--stage", "real"])
        .await
        .ok();
    let expected = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let tags_now = || async {
        let role = stack
            .iam
            .get_role()
            .role_name(FUNCTION)
            .send()
            .await
            .unwrap();
        let role = role.role().unwrap();
        let role_tags: std::collections::BTreeMap<String, String> = role
            .tags()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect();
        let arn = stack
            .function_configuration(FUNCTION)
            .await
            .function_arn()
            .unwrap()
            .to_owned();
        let function_tags: std::collections::BTreeMap<String, String> = stack
            .lambda
            .list_tags()
            .resource(&arn)
            .send()
            .await
            .unwrap()
            .tags()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let group = format!("/aws/lambda/{FUNCTION}");
        let group_arn = stack
            .logs
            .describe_log_groups()
            .log_group_name_prefix(&group)
            .send()
            .await
            .unwrap()
            .log_groups()[0]
            .log_group_arn()
            .unwrap()
            .to_owned();
        let log_tags: std::collections::BTreeMap<String, String> = stack
            .logs
            .list_tags_for_resource()
            .resource_arn(&group_arn)
            .send()
            .await
            .unwrap()
            .tags()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let bound = role
            .permissions_boundary()
            .and_then(|b| b.permissions_boundary_arn())
            .map(str::to_owned);
        (role_tags, function_tags, log_tags, bound)
    };
    let first = expected(&[("team", "payments"), ("cost-center", "42")]);
    let (role, function, logs, bound) = tags_now().await;
    assert_eq!((&role, &function, &logs), (&first, &first, &first));
    assert_eq!(bound.as_deref(), Some(boundary.as_str()));

    let (_dir2, retagged) = temp_config(with(r#"{ team = "platform" }"#, ""));
    let changed = stack
        .run(&retagged, &["deploy", "--stage", "real"])
        .await
        .ok();
    assert!(changed.stdout.contains("Updated"), "{}", changed.stdout);
    let second = expected(&[("team", "platform")]);
    let (role, function, logs, bound) = tags_now().await;
    assert_eq!((&role, &function, &logs), (&second, &second, &second));
    assert_eq!(
        bound, None,
        "the boundary the deployer set stays after its key went"
    );
    stack.assert_no_changes(&retagged, "real").await;
}
