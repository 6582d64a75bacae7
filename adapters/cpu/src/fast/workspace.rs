//! The buffers a fast engine keeps between calls: the normalised features of
//! its last batch. A call of the same shape writes them again in place, so
//! their pages are already mapped: a fresh buffer's first writes fault each
//! page in, which costs more than normalising into it. (Wide rows under the
//! dense plan have no such copy: they are read from the features.)

use std::any::Any;
use std::sync::Mutex;

use conr_core::Scalar;

/// The spare buffers, for one scalar type at a time.
#[derive(Default)]
pub(super) struct Workspace {
    spare: Mutex<Option<Box<dyn Any + Send>>>,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace").finish_non_exhaustive()
    }
}

impl Workspace {
    /// A buffer of `len` elements whose contents the caller overwrites: a
    /// spare one where one of at least `len` and at most `2 len` is kept
    /// (more would hold memory a smaller batch does not need), a new one otherwise.
    pub fn take<T: Scalar>(&self, len: usize) -> Vec<T> {
        let spare = self
            .lock()
            .take()
            .and_then(|b| b.downcast::<Vec<Vec<T>>>().ok());
        let mut buffers = spare.map_or_else(Vec::new, |b| *b);
        let fits = buffers
            .iter()
            .position(|b| b.capacity() >= len && b.capacity() / 2 <= len);
        let mut buffer = match fits {
            Some(i) => buffers.swap_remove(i),
            None => return vec![T::zero(); len],
        };
        if !buffers.is_empty() {
            *self.lock() = Some(Box::new(buffers));
        }
        buffer.truncate(len);
        buffer.resize(len, T::zero());
        buffer
    }

    /// Keeps `buffers` for the next call, in place of any kept before.
    pub fn keep<T: Scalar>(&self, buffers: Vec<Vec<T>>) {
        *self.lock() = Some(Box::new(buffers));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Box<dyn Any + Send>>> {
        // A panic elsewhere leaves nothing half-written here.
        self.spare.lock().unwrap_or_else(|e| e.into_inner())
    }
}
