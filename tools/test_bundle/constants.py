"""The test bundle's constants (the Rust oracle tests depend on them; they are also written to
oracle.json) and its two vocabularies."""

from __future__ import annotations

from pathlib import Path

# ---------------------------------------------------------------------------------------------
# Constants (the Rust oracle tests depend on these; they are also written to oracle.json)
# ---------------------------------------------------------------------------------------------
OPSET = 17
IR_VERSION = 8
LATENT_DIM = 64
LYRIC_CHANNELS = 48
STYLE_CHANNELS = 16
STYLE_GAIN = 4.0
STYLE_DIM = 512
HOP = 2048
SAMPLE_RATE = 44100
AMPLITUDE = 0.125
BASIS_BINS = [8 + 4 * c for c in range(LATENT_DIM)]
TIME_EPS = 1e-6
STYLE_SR = 24000
STYLE_WIN = 480
STYLE_F_LO, STYLE_F_HI = 40.0, 11000.0
STYLE_AUDIO_EPS = 1e-6
L2_EPS = 1e-12

SEED_STYLE_TABLE = 20240601
SEED_NEGATIVE = 20240602
SEED_CHECK = 12345

PRODUCER = "refrain tools/make_test_bundle.py"

# Lyric vocabulary. Ids 0..4 are hard-coded in the pipeline.
PUNCT_HEAD = [",", ".", "?", "!", "_"]
PUNCT_TAIL = [":", ";", "'", "\u2026"]  # ':' ';' "'" '…'
# English espeak-ng IPA symbols (U+0261 'ɡ', U+02D0 'ː', U+0303 combining tilde).
ENGLISH_IPA = (
    "iː ɪ ɜː ɚ oːɹ ɔː ɔːɹ ɑː uː ʊ ɑːɹ ʌ ɛ æ eɪ aɪ ɔɪ aʊ oʊ ɪɹ ɛɹ ʊɹ "
    "p b t d k ɡ f v θ ð s z ʃ ʒ h tʃ dʒ m n ŋ j w ɹ l tɹ dɹ ts dz "
    "i ɔ ə ɾ iə r u oː ɛː ɪː aɪə aɪɚ ɑ̃ ç ɔ̃ ɐ ɑ ɒ ɜ ɫ ʔ x ɬ"
).split()

# Style-text word list (lower case; the tokenizer lower-cases its input).
STYLE_WORDS = """
pop rock jazz blues soul funk disco house techno trance dubstep drum bass hip hop rap trap r b
rnb country folk metal punk grunge indie alternative electronic electronica edm ambient classical
orchestral opera gospel reggae ska latin salsa bossa nova samba tango flamenco afrobeat afrobeats
kpop jpop cpop ballad lofi lo fi synthwave synth wave chillwave chill chillhop garage dance
dancehall reggaeton cumbia bluegrass americana grime drill emo hardcore shoegaze psychedelic
progressive prog new age world celtic swing bebop fusion experimental industrial noise minimal
soundtrack cinematic score video game chiptune acoustic instrumental vocal cappella choir
happy sad melancholic melancholy uplifting energetic calm relaxing peaceful dark bright romantic
nostalgic dreamy epic aggressive angry joyful hopeful emotional sentimental mellow upbeat groovy
funky moody mysterious haunting intense powerful gentle soft warm cold lonely euphoric triumphant
playful tender bittersweet heavy light smooth raw gritty lush atmospheric ethereal hypnotic catchy
anthemic driving laid back spiritual sensual cheerful somber serene tense dramatic whimsical
quirky love heartbreak summer winter night party sunset rain
piano guitar electric violin cello viola strings saxophone sax trumpet trombone horn horns flute
clarinet oboe bassoon harp organ synthesizer keyboard keys ukulele banjo mandolin harmonica
accordion sitar tabla percussion bells marimba xylophone vibraphone 808 kick snare hihat hi hat
claps cymbals bongos congas timpani brass woodwinds pad pads arpeggio arpeggiated bassline riff
riffs solo drums beat beats
male female voice vocals singer singing rapping whisper whispered falsetto harmony harmonies
chorus verse hook duet
fast slow mid tempo bpm rhythm rhythmic groove loud quiet live studio vintage retro modern
futuristic 60s 70s 80s 90s 2000s old school classic distorted clean reverb echo delay
production mix heavy deep high low big small long short simple complex catchy
american british french spanish japanese korean chinese african brazilian irish indian arabic
a an the and with of in for to by on at from feat featuring style like song music track tune
very slightly more less
, . - & / ! ? ' ( ) : ; +
""".split()

ROOT = Path(__file__).resolve().parents[2]  # tools/test_bundle/ -> the repository
DEFAULT_OUT = ROOT / "models" / "test-bundle"


def lyric_vocab() -> list[str]:
    english = sorted(set(ENGLISH_IPA))
    assert len(english) == len(ENGLISH_IPA), "duplicate English symbol"
    symbols = PUNCT_HEAD + english + PUNCT_TAIL
    assert len(set(symbols)) == len(symbols), "duplicate vocabulary symbol"
    return symbols


def style_words() -> list[str]:
    seen: list[str] = []
    for w in STYLE_WORDS:
        if w not in seen:
            seen.append(w)
    return ["[UNK]", "[PAD]"] + seen
