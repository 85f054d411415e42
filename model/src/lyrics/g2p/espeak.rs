//! A minimal binding to the system espeak-ng library (Debian `libespeak-ng1`), for phonemes only.
//!
//! DiffRhythm gets its English phonemes from espeak-ng through phonemizer's ctypes wrapper; this
//! module makes the same calls: `espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, NULL, …)`, the
//! voice whose first language is `en-us` (picked from `espeak_ListVoices` like phonemizer does,
//! i.e. `gmw/en-US`), then `espeak_TextToPhonemes` with UTF-8 input and IPA output with `_`
//! between phonemes, called until the whole text is consumed, the clauses joined with a space.
//!
//! espeak-ng keeps all its state in globals and is not thread-safe: it is initialised once for
//! the process and every call goes through one mutex, held for a whole [`Session`]. Failures are
//! errors, never panics; the `espeakINITIALIZE_DONT_EXIT` flag keeps espeak-ng from calling
//! `exit()` when its data is missing (phonemizer does not pass it; it changes nothing else).
//!
//! Some input leaves espeak-ng 1.51 in another state for all later calls: a Latin letter glued
//! to Hangul ("s안녕") yields no phonemes and switches the process to British English ("one" →
//! `w_ˈɒ_n`) until a clean language switch happens. In the reference that leaks from one lyric
//! line into the next (and from one song into the next in a long-lived process). Each
//! [`Session`] therefore starts by selecting the en-us voice again, which restores the fresh
//! state, so a text's phonemes never depend on what was phonemised before it.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::lyrics::LyricsError;

/// `espeak_VOICE` of speak_lib.h.
#[repr(C)]
struct EspeakVoice {
    name: *const c_char,
    languages: *const c_char,
    identifier: *const c_char,
    gender: u8,
    age: u8,
    variant: u8,
    xx1: u8,
    score: c_int,
    spare: *mut c_void,
}

const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 0x02;
const ESPEAK_INITIALIZE_DONT_EXIT: c_int = 0x8000;
const ESPEAK_CHARS_UTF8: c_int = 1;
/// phonemizer's `phonemes_mode` for espeak > 1.48.3 without ties: IPA (bit 1), `_` as the
/// phoneme separator (bits 8..).
const PHONEME_MODE: c_int = ((b'_' as c_int) << 8) | 0x02;
/// The voice DiffRhythm's English tokenizer asks phonemizer for.
pub const LANGUAGE: &str = "en-us";

#[link(name = "espeak-ng")]
extern "C" {
    fn espeak_Initialize(
        output: c_int,
        buflength: c_int,
        path: *const c_char,
        options: c_int,
    ) -> c_int;
    fn espeak_Info(path_data: *mut *const c_char) -> *const c_char;
    fn espeak_ListVoices(voice_spec: *mut EspeakVoice) -> *const *const EspeakVoice;
    fn espeak_SetVoiceByName(name: *const c_char) -> c_int;
    fn espeak_TextToPhonemes(
        textptr: *mut *const c_void,
        textmode: c_int,
        phonememode: c_int,
    ) -> *const c_char;
}

/// The initialised library; holding its lock is the right to call into espeak-ng.
struct Engine {
    version: String,
    /// The voice's identifier, e.g. `gmw/en-US`.
    voice: CString,
}

static ENGINE: OnceLock<Result<Mutex<Engine>, String>> = OnceLock::new();

fn engine() -> Result<&'static Mutex<Engine>, LyricsError> {
    ENGINE
        .get_or_init(|| initialise().map(Mutex::new))
        .as_ref()
        .map_err(|e| LyricsError::Phonemizer(e.clone()))
}

/// # Safety (of the calls inside)
/// Runs once, inside `OnceLock::get_or_init`, so no other espeak call runs concurrently.
fn initialise() -> Result<Engine, String> {
    // SAFETY: plain C calls with valid arguments; the returned strings are owned by espeak-ng
    // and copied before any other call.
    unsafe {
        let rate = espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS,
            0,
            std::ptr::null(),
            ESPEAK_INITIALIZE_DONT_EXIT,
        );
        let mut data: *const c_char = std::ptr::null();
        let version = espeak_Info(&mut data);
        let version = lossy(version).unwrap_or_else(|| "unknown version".to_string());
        let data = lossy(data).unwrap_or_else(|| "unknown data path".to_string());
        if rate <= 0 {
            return Err(format!(
                "espeak-ng {version} failed to initialise (data: {data})"
            ));
        }
        let identifier = voice_identifier(LANGUAGE).ok_or_else(|| {
            format!("espeak-ng {version} has no {LANGUAGE} voice (data: {data}); is espeak-ng-data installed?")
        })?;
        let voice = CString::new(identifier.clone()).map_err(|e| e.to_string())?;
        if espeak_SetVoiceByName(voice.as_ptr()) != 0 {
            return Err(format!(
                "espeak-ng {version} failed to load the voice {identifier} (data: {data})"
            ));
        }
        Ok(Engine { version, voice })
    }
}

/// phonemizer's `set_voice`: the identifier of the first listed voice whose first language
/// (after espeak's priority byte) is `language`.
///
/// # Safety
/// espeak-ng must be initialised and not in use by another thread.
unsafe fn voice_identifier(language: &str) -> Option<String> {
    let list = espeak_ListVoices(std::ptr::null_mut());
    if list.is_null() {
        return None;
    }
    let mut i = 0;
    loop {
        let voice = *list.add(i);
        if voice.is_null() {
            return None;
        }
        let voice = &*voice;
        if !voice.languages.is_null() {
            let languages = CStr::from_ptr(voice.languages).to_bytes();
            if languages.get(1..) == Some(language.as_bytes()) {
                return lossy(voice.identifier);
            }
        }
        i += 1;
    }
}

/// Copies a C string owned by espeak-ng.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string.
unsafe fn lossy(p: *const c_char) -> Option<String> {
    (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
}

/// Makes sure espeak-ng and its en-us voice are usable.
pub fn check() -> Result<(), LyricsError> {
    engine().map(|_| ())
}

/// The espeak-ng version string (e.g. "1.51").
pub fn version() -> Result<String, LyricsError> {
    let engine = engine()?;
    let guard = engine
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Ok(guard.version.clone())
}

/// Exclusive use of espeak-ng with the en-us voice freshly selected; other threads wait until it
/// is dropped.
pub struct Session {
    _guard: MutexGuard<'static, Engine>,
}

/// Starts a [`Session`]: takes the lock and selects the en-us voice again.
pub fn session() -> Result<Session, LyricsError> {
    let guard = engine()?
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // SAFETY: espeak-ng is initialised and the lock is held; the name is a valid C string.
    if unsafe { espeak_SetVoiceByName(guard.voice.as_ptr()) } != 0 {
        return Err(LyricsError::Phonemizer(format!(
            "espeak-ng failed to select the voice {:?} again",
            guard.voice
        )));
    }
    Ok(Session { _guard: guard })
}

impl Session {
    /// phonemizer's `EspeakWrapper.text_to_phonemes(text)` for the en-us voice: IPA, `_`
    /// between the phonemes of a word, a space between words and between clauses, stress marks
    /// included.
    pub fn text_to_phonemes(&mut self, text: &str) -> Result<String, LyricsError> {
        // C sees the text up to its first NUL, as with ctypes
        let text = text.split('\0').next().unwrap_or_default();
        let c_text = CString::new(text).map_err(|e| LyricsError::Phonemizer(e.to_string()))?;
        let mut parts = Vec::new();
        let mut pointer: *const c_void = c_text.as_ptr().cast();
        // every call consumes at least one clause; the bound only guards against a broken library
        let mut calls_left = text.len() + 2;
        while !pointer.is_null() {
            if calls_left == 0 {
                return Err(LyricsError::Phonemizer(format!(
                    "espeak_TextToPhonemes did not finish on {text:?}"
                )));
            }
            calls_left -= 1;
            // SAFETY: espeak-ng is initialised, this session holds the lock, `pointer` points
            // into `c_text` (kept alive) or is advanced by espeak-ng within it, and the returned
            // string (espeak's own buffer) is copied before the next call.
            let out =
                unsafe { espeak_TextToPhonemes(&mut pointer, ESPEAK_CHARS_UTF8, PHONEME_MODE) };
            if !out.is_null() {
                // SAFETY: a NUL-terminated string owned by espeak-ng, valid until the next call.
                let bytes = unsafe { CStr::from_ptr(out) }.to_bytes();
                if !bytes.is_empty() {
                    let s = std::str::from_utf8(bytes).map_err(|e| {
                        LyricsError::Phonemizer(format!("espeak-ng returned invalid UTF-8: {e}"))
                    })?;
                    parts.push(s.to_string());
                }
            }
        }
        Ok(parts.join(" "))
    }
}

/// [`Session::text_to_phonemes`] in a session of its own.
pub fn text_to_phonemes(text: &str) -> Result<String, LyricsError> {
    session()?.text_to_phonemes(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phonemes_like_phonemizer() {
        // the strings phonemizer 3.3.0's EspeakWrapper gives with espeak-ng 1.51
        assert_eq!(
            text_to_phonemes("hello world, how are you").unwrap(),
            "h_ə_l_ˈoʊ w_ˈɜː_l_d h_ˈaʊ ɑːɹ j_uː"
        );
        assert_eq!(text_to_phonemes("m").unwrap(), "ˈɛ_m");
        assert_eq!(text_to_phonemes("").unwrap(), "");
        assert!(version().unwrap().starts_with('1'));
    }

    #[test]
    fn each_session_starts_fresh() {
        let mut s = session().unwrap();
        assert_eq!(s.text_to_phonemes("one heart").unwrap(), "w_ˈʌ_n h_ˈɑːɹ_t");
        // espeak-ng 1.51 bug: nothing for this, and British English afterwards
        assert_eq!(s.text_to_phonemes("s안녕yeah").unwrap(), "");
        assert_eq!(s.text_to_phonemes("one heart").unwrap(), "w_ˈɒ_n h_ˈɑː_t");
        drop(s);
        assert_eq!(text_to_phonemes("one heart").unwrap(), "w_ˈʌ_n h_ˈɑːɹ_t");
    }

    #[test]
    fn concurrent_calls_are_serialised() {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..20)
                        .map(|_| text_to_phonemes("never gonna give you up").unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for out in h.join().unwrap() {
                assert_eq!(out, "n_ˈɛ_v_ɚ ɡ_ˌə_n_ə ɡ_ˈɪ_v j_uː ˈʌ_p");
            }
        }
    }
}
