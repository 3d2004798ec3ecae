//! The deployer against what real AWS does and moto does not: a new function `Pending`, each
//! update `InProgress`, a role Lambda cannot assume for a few seconds, an idle function
//! `Inactive`, a function whose last update `Failed` or whose creation `Failed`, and Lambda's own environment check,
//! modelled by the proxy in front of moto (`harness::aws_model`).

use harness::aws::Timings;
use harness::deploy::{DeployStack, temp_config};
use harness::fixtures;
use harness::paths::fixture;

const FUNCTION: &str = "aws-hono-real-MyApi";

/// How many CreateFunction calls the proxy saw (refused ones included).
fn create_function_calls(stack: &DeployStack) -> usize {
    stack
        .aws
        .calls()
        .iter()
        .filter(|c| c.method == "POST" && c.path.ends_with("/functions"))
        .count()
}

/// The guide's lifecycle with Lambda's states and IAM propagation switched on: create, no-op,
/// memory change, an update of an idle function, recovery from a failed update, remove.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guide_deploys_through_lambda_states_and_iam_propagation() {
    let stack = DeployStack::start(|_| {}).await;
    stack.aws.set_timings(Timings::realistic());
    let (_dir, config) = temp_config(fixtures::guide_with_function_lines(""));

    let first = stack.run(&config, &["deploy", "--stage", "real"]).await;
    assert_eq!(first.code, 0, "{}", first.all());
    assert!(
        first.stdout.contains("Created   MyApi aws:Function"),
        "{}",
        first.stdout
    );
    // The function was refused while its role propagated, and waited out while Pending.
    let creates = create_function_calls(&stack);
    assert!(creates >= 2, "CreateFunction was never refused: {creates}");

    stack.aws.clear();
    stack.assert_no_changes(&config, "real").await;
    let mutating: Vec<_> = stack
        .aws
        .calls()
        .into_iter()
        .filter(|c| c.mutating())
        .collect();
    assert!(mutating.is_empty(), "{mutating:?}");

    // A memory change: one configuration update, waited for, while InProgress blocks others.
    let (_dir, bigger) = temp_config(fixtures::guide_with_function_lines("memory = 512"));
    let memory = stack.run(&bigger, &["deploy", "--stage", "real"]).await;
    assert_eq!(memory.code, 0, "{}", memory.all());
    assert_eq!(
        stack.function_configuration(FUNCTION).await.memory_size(),
        Some(512)
    );

    // Idle for weeks: Inactive. The next deploy still updates it.
    stack.aws.model().make_inactive(FUNCTION);
    let (_dir, smaller) = temp_config(fixtures::guide_with_function_lines("memory = 256"));
    let idle = stack.run(&smaller, &["deploy", "--stage", "real"]).await;
    assert_eq!(idle.code, 0, "{}", idle.all());
    assert_eq!(
        stack.function_configuration(FUNCTION).await.memory_size(),
        Some(256)
    );

    // A failed update (say a bad layer) must not block the deploy that fixes it.
    stack
        .aws
        .model()
        .fail_last_update(FUNCTION, "The function could not be configured.");
    let (_dir, fixed) = temp_config(fixtures::guide_with_function_lines("memory = 384"));
    let recovered = stack.run(&fixed, &["deploy", "--stage", "real"]).await;
    assert_eq!(recovered.code, 0, "{}", recovered.all());
    let conf = stack.function_configuration(FUNCTION).await;
    assert_eq!(conf.memory_size(), Some(384));
    // The deploy waited for its update: nothing is left InProgress or Failed.
    assert_eq!(
        conf.last_update_status().map(|s| s.as_str()),
        Some("Successful")
    );

    let removed = stack
        .run(&fixed, &["remove", "--stage", "real", "--yes"])
        .await;
    assert_eq!(removed.code, 0, "{}", removed.all());
    let gone = stack
        .lambda
        .get_function_configuration()
        .function_name(FUNCTION)
        .send()
        .await;
    assert!(gone.is_err(), "the function is still there");
}

async fn policy_statements(stack: &DeployStack) -> Vec<serde_json::Value> {
    let out = stack
        .lambda
        .get_policy()
        .function_name(FUNCTION)
        .qualifier("live")
        .send()
        .await
        .unwrap();
    let policy: serde_json::Value = serde_json::from_str(out.policy().unwrap()).unwrap();
    policy["Statement"].as_array().unwrap().clone()
}

/// A URL made before October 2025 has only the InvokeFunctionUrl statement; one edited by
/// hand may carry our statement id with another condition. Either is repaired on deploy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_missing_a_permission_or_with_a_wrong_one_is_repaired() {
    let stack = DeployStack::start(|_| {}).await;
    let (_dir, config) = temp_config(fixtures::guide_with_function_lines(""));
    stack
        .run(&config, &["deploy", "--stage", "real"])
        .await
        .ok();

    for sid in [
        "FunctionURLInvokeAllowPublicAccess",
        "FunctionURLAllowPublicAccess",
    ] {
        stack
            .lambda
            .remove_permission()
            .function_name(FUNCTION)
            .qualifier("live")
            .statement_id(sid)
            .send()
            .await
            .unwrap();
    }
    stack
        .lambda
        .add_permission()
        .function_name(FUNCTION)
        .qualifier("live")
        .statement_id("FunctionURLAllowPublicAccess")
        .action("lambda:InvokeFunctionUrl")
        .principal("*")
        .function_url_auth_type(aws_sdk_lambda::types::FunctionUrlAuthType::AwsIam)
        .send()
        .await
        .unwrap();

    let repaired = stack
        .run(&config, &["deploy", "--stage", "real"])
        .await
        .ok();
    assert!(
        repaired.stdout.contains("Updated   MyApi aws:Function"),
        "{}",
        repaired.stdout
    );
    let statements = policy_statements(&stack).await;
    assert_eq!(statements.len(), 2, "{statements:?}");
    assert!(
        statements
            .iter()
            .any(|s| s["Action"] == "lambda:InvokeFunctionUrl"
                && s["Condition"]["StringEquals"]["lambda:FunctionUrlAuthType"] == "NONE")
    );
    assert!(
        statements
            .iter()
            .any(|s| s["Action"] == "lambda:InvokeFunction"
                && s["Condition"]["Bool"]["lambda:InvokedViaFunctionUrl"] == "true")
    );

    stack.assert_no_changes(&config, "real").await;
}

/// Lambda's own environment check fails at once (it is not IAM propagation), and its error,
/// which echoes the whole environment, reaches the user without the connection string.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambdas_environment_error_is_final_and_keeps_the_secrets() {
    let stack = DeployStack::start(|_| {}).await;
    stack.aws.set_timings(Timings {
        iam_propagation: std::time::Duration::from_secs(4),
        // Below what the deployer measures, so that Lambda's own check answers.
        env_limit: 64,
        ..Timings::default()
    });
    let (_dir, config) = temp_config(fixtures::guide_with_function_lines(""));
    let run = stack.run(&config, &["deploy", "--stage", "real"]).await;
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("String measured"), "{}", run.stderr);
    let creates = create_function_calls(&stack);
    assert_eq!(
        creates, 1,
        "an invalid environment was retried as IAM propagation"
    );

    let state = stack.state_json("real");
    let link = state["resources"]["NeonDB"]["outputs"]["connection_string"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(link.starts_with("postgres"), "{link}");
    let password = link.split(':').nth(2).unwrap().split('@').next().unwrap();
    assert!(password.len() >= 8);
    assert!(
        !run.all().contains(password),
        "printed the password:\n{}",
        run.all()
    );
    assert!(!run.all().contains(&link));
}

/// A role an interrupted run created a moment ago is as new to Lambda as one this run
/// creates: the deploy waits for it to propagate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_left_by_an_interrupted_run_is_waited_for() {
    let stack = DeployStack::start(|_| {}).await;
    stack.aws.set_timings(Timings {
        iam_propagation: std::time::Duration::from_secs(4),
        ..Timings::default()
    });
    stack
        .iam
        .create_role()
        .role_name(FUNCTION)
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .unwrap();
    let (_dir, config) = temp_config(fixtures::guide_with_function_lines(""));
    let run = stack.run(&config, &["deploy", "--stage", "real"]).await;
    assert_eq!(run.code, 0, "{}", run.all());
    let creates = create_function_calls(&stack);
    assert!(creates >= 2, "the role was never refused: {creates}");
}

/// The retention of `/aws/lambda/<function>`, or `None` if the group does not exist.
async fn log_retention(stack: &DeployStack, function: &str) -> Option<Option<i32>> {
    let name = format!("/aws/lambda/{function}");
    let out = stack
        .logs
        .describe_log_groups()
        .log_group_name_prefix(&name)
        .send()
        .await
        .unwrap();
    out.log_groups()
        .iter()
        .find(|g| g.log_group_name() == Some(name.as_str()))
        .map(|g| g.retention_in_days())
}

/// The function's logs get a retention (14 days unless infra.toml says otherwise) instead of
/// Lambda's "never expire", and go with the function under `removal = "remove"`; under
/// `retain` they stay with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_group_has_a_retention_and_goes_with_the_function() {
    let stack = DeployStack::start(|_| {}).await;
    let (_dir, config) = temp_config(fixtures::guide_with_function_lines(""));
    stack
        .run(&config, &["deploy", "--stage", "real"])
        .await
        .ok();
    assert_eq!(log_retention(&stack, FUNCTION).await, Some(Some(14)));

    let (_dir, month) = temp_config(fixtures::guide_with_function_lines(
        "log_retention_days = 30",
    ));
    let diff = stack.run(&month, &["diff", "--stage", "real"]).await.ok();
    assert!(
        diff.stdout.contains("log_retention_days"),
        "{}",
        diff.stdout
    );
    stack.aws.clear();
    stack.run(&month, &["deploy", "--stage", "real"]).await.ok();
    assert_eq!(log_retention(&stack, FUNCTION).await, Some(Some(30)));
    let changes: Vec<_> = stack
        .aws
        .calls()
        .into_iter()
        .filter(|c| c.mutating())
        .map(|c| c.action.unwrap_or(c.path))
        .collect();
    assert_eq!(changes, vec!["PutRetentionPolicy".to_owned()]);

    stack
        .run(&month, &["remove", "--stage", "real", "--yes"])
        .await
        .ok();
    assert_eq!(log_retention(&stack, FUNCTION).await, None);

    // A stage that retains keeps the function and its logs.
    let (_dir, keep) = temp_config(fixtures::guide_with_function_lines("").with(
        "[stages.production]",
        "[stages.keep]\nremoval = \"retain\"\n[stages.production]",
    ));
    stack.run(&keep, &["deploy", "--stage", "keep"]).await.ok();
    stack
        .run(&keep, &["remove", "--stage", "keep", "--yes"])
        .await
        .ok();
    assert_eq!(
        log_retention(&stack, "aws-hono-keep-MyApi").await,
        Some(Some(14))
    );
}

/// A profile made by `aws login` (console credentials) is a credential source like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_from_aws_login_provides_the_credentials() {
    let stack = DeployStack::start(|_| {}).await;
    let (_dir, config) = temp_config(fixtures::guide_with_function_lines(""));
    let home = tempfile::tempdir().unwrap();
    let mut cmd = stack.command(&config, &["deploy", "--stage", "login"]);
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("HOME", home.path())
        .env("AWS_PROFILE", "dev")
        .env("AWS_CONFIG_FILE", fixture("aws-login/config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.path().join("none"))
        .env("AWS_LOGIN_CACHE_DIRECTORY", fixture("aws-login/cache"));
    let out = cmd.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let conf = stack
        .lambda
        .get_function_configuration()
        .function_name("aws-hono-login-MyApi")
        .send()
        .await
        .unwrap();
    assert_eq!(conf.handler(), Some("bootstrap"));
    // The requests were signed with the cached sign-in key.
    assert!(
        stack
            .aws
            .authorizations()
            .iter()
            .any(|a| a.contains("Credential=ASIAEXAMPLELOGINKEY1/")),
        "no request signed with the login credentials"
    );
}

/// IAM refuses to delete a role with policies attached or inline. Whatever was added to the
/// function's role (by hand, by another tool), `remove` detaches and deletes it, then the role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_deletes_a_role_whatever_policies_were_added_to_it() {
    let stack = DeployStack::start(|_| {}).await;
    let (_dir, config) = temp_config(fixtures::guide_with_function_lines(""));
    stack
        .run(&config, &["deploy", "--stage", "real"])
        .await
        .ok();
    stack
        .iam
        .attach_role_policy()
        .role_name(FUNCTION)
        .policy_arn("arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess")
        .send()
        .await
        .unwrap();
    stack
        .iam
        .put_role_policy()
        .role_name(FUNCTION)
        .policy_name("read-a-bucket")
        .policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::example/*"}]}"#,
        )
        .send()
        .await
        .unwrap();

    stack
        .run(&config, &["remove", "--stage", "real", "--yes"])
        .await
        .ok();
    let role = stack.iam.get_role().role_name(FUNCTION).send().await;
    let err = role.expect_err("the role survived remove");
    assert_eq!(
        aws_sdk_iam::error::ProvideErrorMetadata::code(&err),
        Some("NoSuchEntity"),
        "{err:?}"
    );
}

/// The IAM role and log group are made while Neon works. If the Neon side then fails, the
/// stage still names the function, so `remove` leaves nothing behind in AWS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_failing_at_neon_leaves_nothing_that_remove_cannot_find() {
    let stack = DeployStack::start(|c| {
        c.operation_delay = std::time::Duration::from_millis(1500);
        c.operation_faults = vec![neon_emulator::OperationFault {
            action: "start_compute".into(),
            retried: false,
            message: "out of capacity".into(),
        }];
    })
    .await;
    let (_dir, config) = temp_config(fixtures::guide_with_function_lines(""));
    let failed = stack.run(&config, &["deploy", "--stage", "real"]).await;
    assert_eq!(failed.code, 1, "{}", failed.all());
    let role = stack.iam.get_role().role_name(FUNCTION).send().await;
    assert!(role.is_ok(), "the role was not made while Neon worked");

    stack
        .run(&config, &["remove", "--stage", "real", "--yes"])
        .await
        .ok();
    assert!(
        stack
            .iam
            .get_role()
            .role_name(FUNCTION)
            .send()
            .await
            .is_err(),
        "remove left the IAM role behind"
    );
    assert_eq!(log_retention(&stack, FUNCTION).await, None);
    let left = stack.projects_named("my-sst-project").await;
    assert!(
        left.is_empty(),
        "remove left the project whose start failed: {left:#?}"
    );
}

/// A function whose creation `Failed` (here its subnet ran out of addresses) takes no
/// change in Lambda: the deploy says so at once, with Lambda's reason and what to do (exit
/// 1), instead of retrying updates for minutes; the next deploy deletes it and creates it
/// again, and the URL answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_whose_creation_failed_is_reported_then_made_again() {
    let stack = DeployStack::start(|_| {}).await;
    stack.aws.set_timings(Timings {
        pending: std::time::Duration::from_millis(500),
        ..Timings::default()
    });
    const REASON: &str = "Lambda was unable to configure access to your environment variables because the KMS key is invalid for CreateGrant.";
    stack
        .aws
        .model()
        .fail_next_creation(FUNCTION, REASON, "InvalidConfiguration");
    let (_dir, config) = temp_config(fixtures::guide_with_function_lines(""));
    let failed = stack.run(&config, &["deploy", "--stage", "real"]).await;
    assert_eq!(failed.code, 1, "{}", failed.all());
    for text in [
        "Lambda could not set it up (State Failed)",
        REASON,
        "InvalidConfiguration",
        "the next deploy deletes the failed function and creates it again",
    ] {
        assert!(failed.stderr.contains(text), "{text}: {}", failed.stderr);
    }

    let again = stack.run(&config, &["deploy", "--stage", "real"]).await;
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(
        again.stderr.contains("deleting it to create it again"),
        "{}",
        again.stderr
    );
    let conf = stack.function_configuration(FUNCTION).await;
    assert_eq!(conf.state().map(|s| s.as_str()), Some("Active"));
    let url = stack
        .lambda
        .get_function_url_config()
        .function_name(FUNCTION)
        .qualifier("live")
        .send()
        .await
        .expect("the function has its URL");
    assert!(!url.function_url().is_empty());
    stack.assert_no_changes(&config, "real").await;
}

/// Replies lost after Lambda applied CreateFunctionUrlConfig and both AddPermission calls:
/// the SDK's retries meet what they made (409 ResourceConflictException, as Lambda answers
/// where moto would append a second statement), which the deployer reads and counts done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_and_permission_creates_whose_reply_was_lost_count_as_done() {
    let stack = DeployStack::start(|_| {}).await;
    stack.aws.model().lose_lambda_replies =
        ["CreateFunctionUrlConfig", "AddPermission", "AddPermission"]
            .map(str::to_owned)
            .to_vec();
    let (_dir, config) = temp_config(fixtures::guide_with_function_lines(""));
    let run = stack.run(&config, &["deploy", "--stage", "real"]).await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        stack.aws.model().lose_lambda_replies.is_empty(),
        "a reply the model was to lose was never sent"
    );
    let sids: Vec<String> = policy_statements(&stack)
        .await
        .iter()
        .map(|s| s["Sid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        sids,
        [
            "FunctionURLAllowPublicAccess",
            "FunctionURLInvokeAllowPublicAccess"
        ],
        "one statement each"
    );
    stack.assert_no_changes(&config, "real").await;
}
