//! Resident memory hygiene.

/// Drops this process's mappings of clean, file-backed executable pages
/// (Linux `madvise(MADV_DONTNEED)` on `r-xp` mappings with no anonymous
/// page): code that ran only at start-up (argument parsing, logging and
/// privilege set-up, the dynamic loader's work) stops counting in the
/// daemon's resident set. The pages stay in the page cache, shared with
/// every other process; code the loop runs faults back in (a minor fault,
/// no I/O) the first time it runs again.
///
/// Text pages are never written (no text relocations), so dropping the
/// mapping loses nothing; a mapping with any anonymous (copied) page is
/// left alone anyway. Does nothing elsewhere or if `/proc` is missing.
pub fn trim_startup_code() {
    #[cfg(target_os = "linux")]
    {
        let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
            return;
        };
        let mut current: Option<(usize, usize)> = None;
        let mut candidates = Vec::new();
        for line in smaps.lines() {
            let mut it = line.split_whitespace();
            let Some(first) = it.next() else { continue };
            if let Some((a, b)) = first.split_once('-') {
                if let (Ok(start), Ok(end)) =
                    (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
                {
                    let perms = it.next().unwrap_or("");
                    let path = it.nth(3).unwrap_or("");
                    current = (perms == "r-xp" && path.starts_with('/')).then_some((start, end));
                    continue;
                }
            }
            if first == "Anonymous:" {
                if let Some(m) = current.take() {
                    if it.next() == Some("0") {
                        candidates.push(m);
                    }
                }
            }
        }
        for (start, end) in candidates {
            // SAFETY: the range is an executable, file-backed private
            // mapping of this process with no anonymous page: dropping its
            // pages makes the next access fault them in from the file,
            // unchanged.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        }
    }
}
