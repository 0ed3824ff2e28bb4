//! The cardinality cap of the `task` label (feature `metrics`): beyond the limit, tasks are
//! counted under `task="other"`. A binary of its own: the limit is global to the process.
#![cfg(feature = "metrics")]

mod common;

use std::collections::BTreeMap;
use std::time::SystemTime;

use common::DEADLINE;
use qtasks::backend::NewTask;
use qtasks::{Payload, TaskStatus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_names_beyond_the_cap_share_the_other_label() {
    qtasks::metrics::install().unwrap();
    qtasks::metrics::set_task_label_limit(3);
    let app = common::builder("metrics-cap").build().unwrap();
    let worker = app.spawn_worker();
    // Ten distinct names no worker knows (as a producer of another program could send): each
    // is started and dead-lettered as an unknown task.
    let tasks: Vec<NewTask> = (0..10)
        .map(|i| NewTask {
            uuid: qtasks::Uuid::new_v4(),
            task_name: format!("capped_{i}").into(),
            priority: 0,
            args: Payload::encode(&serde_json::json!({})).unwrap(),
            created_at: SystemTime::now(),
            not_before: None,
            trace: None,
            flow: None,
        })
        .collect();
    app.backend().broker.enqueue(&tasks).await.unwrap();
    for t in &tasks {
        assert_eq!(
            app.wait(t.uuid, DEADLINE).await.unwrap().status,
            TaskStatus::Error
        );
    }
    let text = qtasks::metrics::render(&app).await.unwrap();
    let mut started: BTreeMap<String, f64> = BTreeMap::new();
    let mut dead: BTreeMap<String, f64> = BTreeMap::new();
    for line in text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let value: f64 = value.parse().unwrap_or(0.0);
        let task = series
            .split("task=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("")
            .to_string();
        if series.starts_with("qtasks_tasks_started_total{") {
            started.insert(task, value);
        } else if series.starts_with("qtasks_tasks_dead_lettered_total{")
            && series.contains("reason=\"unknown_task\"")
        {
            dead.insert(task, value);
        }
    }
    let own: Vec<&String> = started.keys().filter(|t| *t != "other").collect();
    assert_eq!(own.len(), 3, "three names get a label of their own: {text}");
    assert!(own.iter().all(|t| t.starts_with("capped_")), "{own:?}");
    assert_eq!(started.get("other"), Some(&7.0), "{text}");
    assert_eq!(started.values().sum::<f64>(), 10.0);
    assert_eq!(dead.get("other"), Some(&7.0), "{text}");
    assert_eq!(dead.values().sum::<f64>(), 10.0);
    // The label a name is counted under, for programs that want to know.
    assert_eq!(&*qtasks::metrics::task_label("capped_never_seen"), "other");
    assert_eq!(&*qtasks::metrics::task_label(own[0]), own[0].as_str());
    worker.shutdown().await.unwrap();
}
