//! Where a process's resident memory is: per mapping from /proc/PID/smaps, and for the
//! binary itself per ELF section, from its section headers and /proc/PID/pagemap (which
//! says, page by page, what is resident).

use std::path::Path;

fn kib(value: &str) -> u64 {
    value.trim().trim_end_matches("kB").trim().parse().unwrap_or(0)
}

/// Resident KiB (and of that, anonymous KiB) per mapping, grouped: file mappings by file
/// name and permissions (`det-agent r-xp` is the binary's code), anonymous ones by kind.
pub fn mappings(pid: u32) -> Vec<(String, u64, u64)> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("/proc smaps");
    let mut groups: Vec<(String, u64, u64)> = Vec::new();
    let mut name = String::new();
    let mut rss = 0;
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let is_header =
            fields.first().is_some_and(|f| f.contains('-') && f.chars().all(|c| c.is_ascii_hexdigit() || c == '-'));
        if is_header {
            let perms = fields.get(1).copied().unwrap_or("");
            name = match fields.get(5) {
                Some(path) if path.starts_with('[') => (*path).to_owned(),
                Some(path) => {
                    let file = Path::new(path).file_name().unwrap_or_default().to_string_lossy().into_owned();
                    let offset = fields.get(2).copied().unwrap_or("0").trim_start_matches('0');
                    format!("{file} {perms} @0x{}", if offset.is_empty() { "0" } else { offset })
                }
                None => format!("anonymous {perms}"),
            };
        } else if let Some(value) = line.strip_prefix("Rss:") {
            rss = kib(value);
        } else if let Some(value) = line.strip_prefix("Anonymous:") {
            let anon = kib(value);
            if rss == 0 {
                continue;
            }
            match groups.iter_mut().find(|(n, _, _)| *n == name) {
                Some((_, r, a)) => {
                    *r += rss;
                    *a += anon;
                }
                None => groups.push((name.clone(), rss, anon)),
            }
        }
    }
    groups
}

/// (name, address or KiB, size) per section.
type Sections = Vec<(String, u64, u64)>;

fn u16_at(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes([b[at], b[at + 1]]).into()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The binary's sections that occupy memory, as (name, address, size), and the address of
/// its first loaded segment (x86_64 ELF only).
fn elf_sections(elf: &[u8]) -> Result<(Sections, u64), String> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return Err("not a 64-bit little-endian ELF file".to_owned());
    }
    let (phoff, phentsize, phnum) = (u64_at(elf, 0x20) as usize, u16_at(elf, 0x36), u16_at(elf, 0x38));
    let first_load = (0..phnum)
        .map(|i| phoff + i * phentsize)
        .find(|&at| u32_at(elf, at) == 1) // PT_LOAD
        .map(|at| u64_at(elf, at + 16) & !0xfff)
        .ok_or("no loaded segment")?;
    let (shoff, shentsize, shnum, shstrndx) =
        (u64_at(elf, 0x28) as usize, u16_at(elf, 0x3a), u16_at(elf, 0x3c), u16_at(elf, 0x3e));
    let header = |i: usize| shoff + i * shentsize;
    if shnum == 0 || header(shnum) > elf.len() {
        return Err("no section headers (stripped?)".to_owned());
    }
    let names = u64_at(elf, header(shstrndx) + 24) as usize;
    let mut sections = Vec::new();
    for i in 0..shnum {
        let at = header(i);
        let (flags, addr, size) = (u64_at(elf, at + 8), u64_at(elf, at + 16), u64_at(elf, at + 32));
        if flags & 0x2 == 0 || size == 0 {
            continue; // not SHF_ALLOC: not in memory
        }
        let name_at = names + u32_at(elf, at) as usize;
        let end = elf[name_at..].iter().position(|&b| b == 0).map_or(name_at, |n| name_at + n);
        sections.push((String::from_utf8_lossy(&elf[name_at..end]).into_owned(), addr, size));
    }
    Ok((sections, first_load))
}

/// Resident KiB per ELF section of `bin` in process `pid`, as (name, resident KiB, size KiB),
/// for sections of at least 4 KiB. A page shared by two sections
/// counts for both.
pub fn sections(pid: u32, bin: &Path) -> Result<Sections, String> {
    use std::io::{Read, Seek, SeekFrom};
    let elf = std::fs::read(bin).map_err(|e| format!("{}: {e}", bin.display()))?;
    let (sections, first_load) = elf_sections(&elf)?;
    // Where the kernel put the binary: its mapping of file offset 0.
    let real = std::fs::canonicalize(bin).map_err(|e| e.to_string())?;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| e.to_string())?;
    let start = maps
        .lines()
        .find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let ours = f.get(5).is_some_and(|p| Path::new(p) == real)
                && f.get(2).is_some_and(|o| o.trim_matches('0').is_empty());
            ours.then(|| u64::from_str_radix(f[0].split('-').next()?, 16).ok()).flatten()
        })
        .ok_or("the binary's first mapping is not in /proc/PID/maps")?;
    let bias = start - first_load;
    let mut pagemap = std::fs::File::open(format!("/proc/{pid}/pagemap")).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (name, addr, size) in sections {
        let (first, last) = ((bias + addr) / 4096, (bias + addr + size - 1) / 4096);
        let mut entries = vec![0u8; ((last - first + 1) * 8) as usize];
        pagemap.seek(SeekFrom::Start(first * 8)).map_err(|e| e.to_string())?;
        pagemap.read_exact(&mut entries).map_err(|e| e.to_string())?;
        // Bit 63 of each 64-bit entry: the page is present.
        let resident = entries.chunks(8).filter(|e| e[7] & 0x80 != 0).count() as u64 * 4;
        if size >= 4096 {
            out.push((name, resident, size / 1024));
        }
    }
    Ok(out)
}
