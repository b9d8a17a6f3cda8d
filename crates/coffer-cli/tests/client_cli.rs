//! Snapshot tests (trycmd) of the client commands' help and of their errors that need no
//! server: `tests/cmd/*.toml`, expected output beside each case. Regenerate after a deliberate
//! change with `TRYCMD=overwrite cargo test -p coffer-cli --test client_cli`.

#[test]
fn client_cli_snapshots() {
    trycmd::TestCases::new().case("tests/cmd/*.toml");
}
