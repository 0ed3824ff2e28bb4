use qtasks::Yield;

#[qtasks::task]
async fn steps(y: Yield<String, String>) -> String {
    y.send("a".into()).await
}

fn main() {}
