use qtasks::SyncTask;

#[qtasks::task(echo)]
async fn add(task: SyncTask, a: i64) -> i64 {
    let _ = task;
    a
}

fn main() {}
