#[qtasks::task]
unsafe fn one() -> u8 {
    1
}

fn main() {}
