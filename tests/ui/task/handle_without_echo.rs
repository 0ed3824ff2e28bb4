use qtasks::AsyncTask;

#[qtasks::task]
async fn add(task: AsyncTask, a: i64) -> i64 {
    let _ = task;
    a
}

fn main() {}
