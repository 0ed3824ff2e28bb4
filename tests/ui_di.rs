//! Compile errors of dependency injection: each wrong parameter is reported at that parameter.

#[test]
fn ui_di() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/di/*.rs");
}
