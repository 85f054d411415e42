"""The test bundle's own small Mandarin lexicon and pinyin-to-bopomofo table, in the format of
DiffRhythm's data files: enough for the tests' Chinese lines."""

from __future__ import annotations



# The test bundle's own Mandarin lexicon (standard readings, tone digits 1-5) and the bopomofo of
# its syllables: enough for the tests' Chinese lines, in the format of DiffRhythm's data files.
MANDARIN_LEXICON = """\
你 ni3
好 hao3
我 wo3
们 men5
的 de5
了 le5
来 lai2
飞 fei1
花 hua1
月 yue4
亮 liang4
心 xin1
爱 ai4
歌 ge1
唱 chang4
一 yi1
不 bu4
是 shi4
天 tian1
风 feng1
人 ren2
山 shan1
水 shui3
美 mei3
丽 li4
梦 meng4
想 xiang3
在 zai4
里 li3
有 you3
上 shang4
大 da4
小 xiao3
中 zhong1
国 guo2
快 kuai4
乐 le4
今 jin1
明 ming2
日 ri4
夜 ye4
星 xing1
光 guang1
家 jia1
雨 yu3
雪 xue3
春 chun1
秋 qiu1
零 ling2
二 er4
三 san1
四 si4
五 wu3
六 liu4
七 qi1
八 ba1
九 jiu3
十 shi2
百 bai3
千 qian1
万 wan4
年 nian2
点 dian3
儿 er2
你好 ni3 hao3
我们 wo3 men5
月亮 yue4 liang4
快乐 kuai4 le4
美丽 mei3 li4
梦想 meng4 xiang3
今天 jin1 tian1
明天 ming2 tian1
星光 xing1 guang1
唱歌 chang4 ge1
中国 zhong1 guo2
"""
PINYIN_BOPOMOFO = (
    "ai ㄞ|ba ㄅㄚ|bai ㄅㄞ|bu ㄅㄨ|chang ㄔㄤ|chun ㄔㄨㄣ|da ㄉㄚ|de ㄉㄜ|dian ㄉㄧㄢ|er ㄦ|"
    "fei ㄈㄟ|feng ㄈㄥ|ge ㄍㄜ|guang ㄍㄨㄤ|guo ㄍㄨㄛ|hao ㄏㄠ|hua ㄏㄨㄚ|jia ㄐㄧㄚ|jin ㄐㄧㄣ|"
    "jiu ㄐㄧㄡ|kuai ㄎㄨㄞ|lai ㄌㄞ|le ㄌㄜ|li ㄌㄧ|liang ㄌㄧㄤ|ling ㄌㄧㄥ|liu ㄌㄧㄡ|mei ㄇㄟ|"
    "men ㄇㄣ|meng ㄇㄥ|ming ㄇㄧㄥ|ni ㄋㄧ|nian ㄋㄧㄢ|qi ㄑㄧ|qian ㄑㄧㄢ|qiu ㄑㄧㄡ|ren ㄖㄣ|ri ㄖ|"
    "san ㄙㄢ|shan ㄕㄢ|shang ㄕㄤ|shi ㄕ|shui ㄕㄨㄟ|si ㄙ|tian ㄊㄧㄢ|wan ㄨㄢ|wo ㄨㄛ|wu ㄨ|"
    "xiang ㄒㄧㄤ|xiao ㄒㄧㄠ|xin ㄒㄧㄣ|xing ㄒㄧㄥ|xue ㄒㄩㄝ|ye ㄧㄝ|yi ㄧ|you ㄧㄡ|yu ㄩ|"
    "yue ㄩㄝ|zai ㄗㄞ|zhong ㄓㄨㄥ"
)


def mandarin_files() -> dict[str, str]:
    lexicon = "".join(
        f"{word}\t{pinyin}\n"
        for word, pinyin in (line.split(" ", 1) for line in MANDARIN_LEXICON.splitlines())
    )
    table = "".join(f"{p}\t{b}\n" for p, b in (e.split(" ") for e in PINYIN_BOPOMOFO.split("|")))
    syllables = {p[:-1] for line in lexicon.splitlines() for p in line.split("\t")[1].split(" ")}
    known = {e.split(" ")[0] for e in PINYIN_BOPOMOFO.split("|")}
    assert syllables <= known, f"no bopomofo for {sorted(syllables - known)}"
    return {"mandarin/chinese_lexicon.txt": lexicon, "mandarin/pinyin_2_bpmf.txt": table}
