//! Compile errors of `#[qtasks::task]` and `#[qtasks::shared_task]`: one case per message,
//! each spanned at the offending token (`tests/ui/task/*.rs` with its `.stderr`).

#[test]
fn task_macro_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/task/*.rs");
}
