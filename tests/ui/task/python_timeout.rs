#[qtasks::shared_task(timeout = 30)]
fn slow() -> u8 {
    1
}

fn main() {}
