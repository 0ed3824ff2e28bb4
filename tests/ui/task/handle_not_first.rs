use qtasks::AsyncTask;

#[qtasks::task(echo)]
async fn add(a: i64, task: AsyncTask) -> i64 {
    let _ = task;
    a
}

fn main() {}
