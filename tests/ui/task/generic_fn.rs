#[qtasks::task]
async fn id<T: Send>(value: T) -> T {
    value
}

fn main() {}
