//! `App::build()` fails fast and lists every problem; routers decide which tasks an app has.

mod common;

use common::builder;
use qtasks::{BuildProblem, Error, Router};

mod broken {
    /// Two tasks with one name: only apps that include this router see the clash.
    pub(crate) static DUPLICATES: qtasks::Router = qtasks::Router::new("duplicates");

    #[qtasks::task(name = "dup", router = DUPLICATES)]
    async fn first() {}

    #[qtasks::task(name = "dup", router = DUPLICATES)]
    async fn second() {}

    #[qtasks::task(name = "dup2", router = DUPLICATES)]
    async fn third() {}

    #[qtasks::task(name = "dup2", router = DUPLICATES)]
    fn fourth() {}
}

#[qtasks::task]
async fn everywhere() {}

#[test]
fn duplicate_task_names_fail_the_build_naming_both_definitions() {
    let err = builder("dups")
        .include_router(&broken::DUPLICATES)
        .build()
        .unwrap_err();
    let Error::Build(problems) = &err else {
        panic!("expected a build error, got {err:?}")
    };
    assert_eq!(problems.len(), 2, "{problems:#?}");
    let msg = err.to_string();
    assert!(msg.contains("duplicate task name \"dup\""), "{msg}");
    assert!(msg.contains("duplicate task name \"dup2\""), "{msg}");
    // Both definitions' file and line.
    let file = "tests/app_build.rs";
    assert!(
        problems[0].to_string().matches(file).count() == 2,
        "{}",
        problems[0]
    );
    assert!(
        problems[1].to_string().matches(file).count() == 2,
        "{}",
        problems[1]
    );
    // The same, read from the typed problems.
    let mut names = Vec::new();
    for problem in problems {
        let BuildProblem::DuplicateTask {
            name,
            first,
            second,
        } = problem
        else {
            panic!("expected a duplicate task, got {problem:?}")
        };
        assert!(first.starts_with(file) && second.starts_with(file) && first != second);
        names.push(name.as_str());
    }
    assert_eq!(names, ["dup", "dup2"]);
}

#[test]
fn an_app_without_the_router_does_not_see_its_tasks() {
    let app = builder("no-router").build().unwrap();
    let names: Vec<_> = app.tasks().iter().map(|t| t.name).collect();
    assert!(names.contains(&"everywhere"));
    assert!(!names.contains(&"dup") && !names.contains(&"dup2"));
}

#[test]
fn invalid_settings_are_reported_with_what_to_do() {
    let err = builder("zero").max_tasks_process(0).build().unwrap_err();
    assert!(err.to_string().contains("max_tasks_process"), "{err}");
    let err = builder("bad-url")
        .broker_url("amqp://localhost")
        .build()
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("amqp") && msg.contains("memory"), "{msg}");
}

#[test]
fn task_specs_carry_their_location_and_signature() {
    static _UNUSED: Router = Router::new("unused");
    let app = builder("specs").build().unwrap();
    let spec = app.task("everywhere").unwrap();
    assert_eq!(spec.file, "tests/app_build.rs");
    assert!(spec.line > 0);
    assert_eq!(spec.kind, qtasks::registry::TaskKind::Async);
    assert!(spec.module_path.ends_with("app_build"));
}

#[test]
fn memory_url_options_are_checked() {
    builder("memory-capped")
        .broker_url("memory://?max_finished=5")
        .build()
        .unwrap();
    let err = builder("memory-bad-option")
        .broker_url("memory://?max_records=5")
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("max_finished") && err.contains("max_records"),
        "{err}"
    );
    let err = builder("memory-bad-value")
        .broker_url("memory://?max_finished=lots")
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("whole number") && err.contains("lots"),
        "{err}"
    );
}
