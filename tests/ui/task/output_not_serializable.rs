struct Report {
    lines: Vec<String>,
}

#[qtasks::task]
async fn build_report(n: u32) -> Report {
    Report {
        lines: vec![n.to_string()],
    }
}

fn main() {}
