// `#[extract]` on a type that does not implement `FromTaskContext`.
struct Clock;

#[qtasks::task]
async fn tick(#[extract] clock: Clock) {
    let _ = clock;
}

fn main() {}
