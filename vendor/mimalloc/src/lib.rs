// Copyright 2019 Octavian Oncescu

#![no_std]

//! A drop-in global allocator wrapper around the [mimalloc](https://github.com/microsoft/mimalloc) allocator.
//! Mimalloc is a general purpose, performance oriented allocator built by Microsoft.
//!
//! ## Usage
//! ```rust,ignore
//! use mimalloc::MiMalloc;
//!
//! #[global_allocator]
//! static GLOBAL: MiMalloc = MiMalloc;
//! ```
//!
//! ## Usage with secure mode
//! Using secure mode adds guard pages,
//! randomized allocation, encrypted free lists, etc. The performance penalty is usually
//! around 10% according to [mimalloc's](https://github.com/microsoft/mimalloc)
//! own benchmarks.
//!
//! To enable secure mode, put in `Cargo.toml`:
//! ```toml
//! [dependencies]
//! mimalloc = { version = "*", features = ["secure"] }
//! ```

extern crate libmimalloc_sys as ffi;

#[cfg(feature = "extended")]
mod extended;

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;
use ffi::*;

/// Drop-in mimalloc global allocator.
///
/// ## Usage
/// ```rust,ignore
/// use mimalloc::MiMalloc;
///
/// #[global_allocator]
/// static GLOBAL: MiMalloc = MiMalloc;
/// ```
pub struct MiMalloc;

/// The alignment every `mi_malloc` block of at least this size already has
/// (`MI_MAX_ALIGN_SIZE` in mimalloc's `types.h`: block sizes are multiples of it and the
/// first block of a page starts on it), and the natural alignment of smaller blocks.
const MIN_ALIGN: usize = 16;

/// Whether a plain `mi_malloc(size)` is aligned enough for `align`, the rule std's
/// `System` allocator applies to `malloc`. Asking `mi_malloc_aligned` instead costs more
/// than it looks: its fast path takes only a small block that happens to be free in its
/// page, and otherwise, for a size whose block is not a power of two, it over-allocates by
/// `align - 1` bytes and marks the page as holding interior pointers, even for an
/// alignment every block has.
#[inline]
fn malloc_is_enough(size: usize, align: usize) -> bool {
    align <= MIN_ALIGN && align <= size
}

unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if malloc_is_enough(layout.size(), layout.align()) {
            mi_malloc(layout.size()) as *mut u8
        } else {
            mi_malloc_aligned(layout.size(), layout.align()) as *mut u8
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if malloc_is_enough(layout.size(), layout.align()) {
            mi_zalloc(layout.size()) as *mut u8
        } else {
            mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi_free(ptr as *mut c_void);
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if malloc_is_enough(new_size, layout.align()) {
            mi_realloc(ptr as *mut c_void, new_size) as *mut u8
        } else {
            mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    #[test]
    fn it_frees_allocated_memory() {
        unsafe {
            let layout = Layout::from_size_align(8, 8).unwrap();
            let alloc = MiMalloc;

            let ptr = alloc.alloc(layout);
            alloc.dealloc(ptr, layout);
        }
    }

    #[test]
    fn it_frees_allocated_big_memory() {
        unsafe {
            let layout = Layout::from_size_align(1 << 20, 32).unwrap();
            let alloc = MiMalloc;

            let ptr = alloc.alloc(layout);
            alloc.dealloc(ptr, layout);
        }
    }

    #[test]
    fn it_frees_zero_allocated_memory() {
        unsafe {
            let layout = Layout::from_size_align(8, 8).unwrap();
            let alloc = MiMalloc;

            let ptr = alloc.alloc_zeroed(layout);
            alloc.dealloc(ptr, layout);
        }
    }

    #[test]
    fn it_frees_zero_allocated_big_memory() {
        unsafe {
            let layout = Layout::from_size_align(1 << 20, 32).unwrap();
            let alloc = MiMalloc;

            let ptr = alloc.alloc_zeroed(layout);
            alloc.dealloc(ptr, layout);
        }
    }

    #[test]
    fn it_frees_reallocated_memory() {
        unsafe {
            let layout = Layout::from_size_align(8, 8).unwrap();
            let alloc = MiMalloc;

            let ptr = alloc.alloc(layout);
            let ptr = alloc.realloc(ptr, layout, 16);
            alloc.dealloc(ptr, layout);
        }
    }

    #[test]
    fn it_frees_reallocated_big_memory() {
        unsafe {
            let layout = Layout::from_size_align(1 << 20, 32).unwrap();
            let alloc = MiMalloc;

            let ptr = alloc.alloc(layout);
            let ptr = alloc.realloc(ptr, layout, 2 << 20);
            alloc.dealloc(ptr, layout);
        }
    }

    #[test]
    fn plain_malloc_blocks_are_aligned_as_asked() {
        // Every size up to 4 KiB and past the small and medium block limits, with each
        // alignment the plain `mi_malloc` path serves; a few blocks of each kept alive at
        // once so that they come from different positions in their page.
        let alloc = MiMalloc;
        let mut sizes: Vec<usize> = (1..=4096).collect();
        sizes.extend([5000, 9000, 70_000, 600_000]);
        for align in [1, 2, 4, 8, 16] {
            for &size in &sizes {
                let layout = Layout::from_size_align(size, align).unwrap();
                let mut held = Vec::new();
                for i in 0..4 {
                    unsafe {
                        let ptr = if i % 2 == 0 {
                            alloc.alloc(layout)
                        } else {
                            let zeroed = alloc.alloc_zeroed(layout);
                            let bytes = core::slice::from_raw_parts(zeroed, size);
                            assert!(bytes.iter().all(|&b| b == 0), "size {size}");
                            zeroed
                        };
                        assert!(!ptr.is_null());
                        assert_eq!(ptr as usize % align, 0, "size {size} align {align}");
                        ptr.write_bytes(0xa5, size);
                        let grown = alloc.realloc(ptr, layout, size * 3 / 2 + 1);
                        assert_eq!(grown as usize % align, 0, "realloc of {size} align {align}");
                        assert_eq!(*grown.add(size - 1), 0xa5);
                        held.push((grown, Layout::from_size_align(size * 3 / 2 + 1, align).unwrap()));
                    }
                }
                for (ptr, layout) in held {
                    unsafe { alloc.dealloc(ptr, layout) };
                }
            }
        }
    }

    #[test]
    fn alignments_past_malloc_still_hold() {
        let alloc = MiMalloc;
        for align in [32, 64, 128, 4096] {
            for size in [1, 8, 24, 100, 1000, 5000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                unsafe {
                    let ptr = alloc.alloc(layout);
                    assert_eq!(ptr as usize % align, 0, "size {size} align {align}");
                    let ptr = alloc.realloc(ptr, layout, size * 2);
                    assert_eq!(ptr as usize % align, 0, "realloc of {size} align {align}");
                    alloc.dealloc(ptr, layout);
                }
            }
        }
        // Smaller than its alignment: not served by plain malloc either.
        let layout = Layout::from_size_align(8, 16).unwrap();
        unsafe {
            let ptr = alloc.alloc(layout);
            assert_eq!(ptr as usize % 16, 0);
            alloc.dealloc(ptr, layout);
        }
    }
}
