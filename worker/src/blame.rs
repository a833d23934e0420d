//! Which operator of a chain a panic came from.
//!
//! Operators of one chain call each other on one thread, so a panic unwinds
//! through several of them. Each operator holds a [`BlameGuard`] while it runs;
//! the innermost guard, dropped first during unwinding, records its operator.
//! On the normal path the guard is forgotten, which costs nothing.

use std::cell::RefCell;

thread_local! {
    static BLAMED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Records `operator` as the culprit if the thread unwinds while the guard lives.
#[must_use = "a guard blames only while it lives; call `disarm` when the operator returns"]
pub struct BlameGuard<'a> {
    operator: &'a str,
}

impl<'a> BlameGuard<'a> {
    /// Starts blaming `operator` for panics.
    #[inline]
    pub fn new(operator: &'a str) -> Self {
        Self { operator }
    }

    /// The operator returned normally.
    #[inline]
    pub fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for BlameGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            BLAMED.with(|blamed| {
                blamed.borrow_mut().get_or_insert_with(|| self.operator.to_owned());
            });
        }
    }
}

/// Takes the operator blamed for the last panic on this thread.
pub fn take_blamed() -> Option<String> {
    BLAMED.with(|blamed| blamed.borrow_mut().take())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn innermost_operator_is_blamed() {
        let result = std::panic::catch_unwind(|| {
            let outer = BlameGuard::new("outer");
            let inner = BlameGuard::new("inner");
            if std::hint::black_box(true) {
                panic!("boom");
            }
            inner.disarm();
            outer.disarm();
        });
        assert!(result.is_err());
        assert_eq!(take_blamed().as_deref(), Some("inner"));
        assert_eq!(take_blamed(), None);
    }

    #[test]
    fn disarmed_guard_blames_nobody() {
        let result = std::panic::catch_unwind(|| {
            BlameGuard::new("finished").disarm();
            panic!("later");
        });
        assert!(result.is_err());
        assert_eq!(take_blamed(), None);
    }
}
