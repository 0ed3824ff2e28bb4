fn handle(step: String) -> String {
    step
}

#[qtasks::task(generate_handler = handle -> String)]
async fn steps(y: qtasks::Yield<String, String>) {
    let _ = y.send("one".into()).await;
}

fn main() {}
