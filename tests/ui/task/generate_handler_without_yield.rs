fn handle(step: String) -> String {
    step
}

#[qtasks::task(generate_handler = handle)]
async fn steps() -> u8 {
    1
}

fn main() {}
