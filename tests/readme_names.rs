//! The README's tables name the exit stack's methods (issue 20, item 4): every name they give
//! is called here, on the real stack, so a rename breaks this file, and the names are read
//! from README.md itself, so a table that keeps an old name (or gains one nothing calls) fails.
#![cfg(feature = "alloc")]

use std::collections::BTreeSet;

use async_with::{ExitStack, Outcome, closing, from_fns, null_context, with};
use futures_executor::block_on;

/// Calls every stack method the README may name; returns their names.
fn exercised() -> BTreeSet<&'static str> {
    block_on(async {
        let mut stack = ExitStack::<()>::new();
        let n = stack
            .enter_context(from_fns(
                async || Ok::<_, ()>(1_u8),
                async |_: u8, _| Ok(()),
            ))
            .await
            .unwrap();
        *n += 1;
        let m = stack.enter_infallible(null_context(2_u8)).await;
        *m += 1;
        let file = stack.adopt(String::from("f"), async |_f: String| Ok::<_, ()>(()));
        file.push('!');
        stack.defer(async || Ok::<_, ()>(()));
        stack.push_exit(async |outcome: Outcome<'_>| {
            assert!(outcome.is_success());
            Ok::<_, ()>(())
        });
        let mut moved = stack.pop_all();
        assert_eq!((stack.len(), moved.len()), (0, 5));
        assert_eq!(moved.close().await, Ok(()));
        let done = with(ExitStack::<()>::new(), async |stack| {
            stack
                .enter_context(closing(7_u8, async |_n: u8| Ok::<_, ()>(())))
                .await?;
            stack
                .enter_context(from_fns(async || Ok(()), async |(), _| Ok(())))
                .await?;
            Ok::<_, ()>(stack.len())
        })
        .await;
        assert_eq!(done.ok(), Some(2));
        let mut last = ExitStack::<()>::new();
        assert_eq!(last.close_with(Outcome::Success).await, Ok(()));
    });
    [
        "enter_context",
        "enter_infallible",
        "adopt",
        "defer",
        "push_exit",
        "pop_all",
        "close",
        "close_with",
        "with",
    ]
    .into_iter()
    .collect()
}

/// The lowercase names in backticks in the last cell of each README table row about the stack
/// (the async-with column; the Python column names Python's methods).
fn readme_names() -> BTreeSet<String> {
    let readme = include_str!("../README.md");
    let mut names = BTreeSet::new();
    for row in readme
        .lines()
        .filter(|line| line.starts_with('|') && line.contains("ExitStack"))
    {
        let cells: Vec<&str> = row.trim_matches('|').split(" | ").collect();
        let last = cells.last().expect("a table row has cells");
        let pieces: Vec<&str> = last.split('`').collect();
        for (i, quoted) in pieces.iter().enumerate() {
            // Odd pieces are inside backticks; "(feature `alloc`)" names a feature.
            if i % 2 == 0 || pieces[i - 1].ends_with("feature ") {
                continue;
            }
            let name: String = quoted
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

#[test]
fn every_stack_method_the_readme_names_exists() {
    let exercised = exercised();
    let named = readme_names();
    assert!(named.len() >= 6, "the README's stack rows: {named:?}");
    for name in &named {
        assert!(
            exercised.contains(name.as_str()),
            "the README names `{name}`, which this test does not call on the stack"
        );
    }
}
