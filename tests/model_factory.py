"""Builds small random CLIP, BLIP and multilingual text models on disk, loadable like real ones."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's byte-to-printable-character table, which the BPE vocab is written in."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def write_clip_tokenizer_files(directory: Path) -> int:
    """A character-level CLIP vocab (every byte, alone and word-final) plus the two special tokens."""
    chars = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return len(vocab)


def build_clip_model(
    directory: Path,
    *,
    full_size: bool = False,
    image_size: int = 64,
    patch_size: int = 16,
    hidden: int = 32,
    layers: int = 2,
    projection_dim: int = 16,
    seed: int = 0,
) -> Path:
    """Save a random CLIP (model, tokenizer, image processor) into ``directory``.

    ``full_size=True`` is the real ViT-B/32 architecture (``CLIPConfig()``), for speed figures.
    """
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    vocab_size = write_clip_tokenizer_files(directory)
    tokenizer = CLIPTokenizer(vocab_file=str(directory / "vocab.json"), merges_file=str(directory / "merges.txt"))
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    bos = tokenizer.convert_tokens_to_ids("<|startoftext|>")
    text = {
        "vocab_size": vocab_size, "eos_token_id": eos, "bos_token_id": bos, "pad_token_id": eos,
        "max_position_embeddings": 77,
    }
    if full_size:
        config = CLIPConfig(text_config=text)
        image_size = config.vision_config.image_size
    else:
        text.update(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers, num_attention_heads=2)
        vision = {
            "hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": layers,
            "num_attention_heads": 2, "image_size": image_size, "patch_size": patch_size,
        }
        config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(directory)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


# A tiny caption vocabulary: BERT's specials, BLIP's decoder start token, a few words and characters.
BLIP_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]")
BLIP_WORDS = [
    "a", "an", "the", "of", "on", "in", "with", "and", "is", "are", "at", "cat", "dog", "man", "woman", "person",
    "people", "coffee", "cup", "rocket", "sky", "space", "flower", "tree", "red", "blue", "green", "white", "black",
    "small", "large", "sitting", "standing", "picture", "photo",
]


def build_blip_model(directory: Path, *, seed: int = 0, full_size: bool = False) -> Path:
    """Save a random BLIP captioner (model, BERT tokenizer, image processor) into ``directory``.

    The ids follow the real ``Salesforce/blip-image-captioning-base``: generate() starts every
    caption at ``text_config.bos_token_id`` (``[DEC]``) and stops at ``text_config.sep_token_id``
    (``[SEP]``); finished rows are padded with ``pad_token_id`` (``[PAD]``). All three are special
    tokens, so ``batch_decode(skip_special_tokens=True)`` leaves only the words.

    ``full_size``: BLIP-base's architecture (``BlipConfig()``) with a vocabulary of its size, for
    speed figures; otherwise a tiny model for tests.
    """
    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessorPil,
        BlipProcessor,
    )

    directory.mkdir(parents=True, exist_ok=True)
    base = BlipConfig()
    tokens = list(BLIP_SPECIAL_TOKENS) + BLIP_WORDS + list("abcdefghijklmnopqrstuvwxyz.,")
    if full_size:
        tokens += [f"w{i}" for i in range(base.text_config.vocab_size - len(tokens))]
    (directory / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    # transformers 5's BertTokenizer takes the vocabulary itself; a vocab_file argument is ignored.
    vocab = {token: i for i, token in enumerate(tokens)}
    tokenizer = BertTokenizer(vocab=vocab, bos_token="[DEC]")
    ids = {
        "bos_token_id": tokenizer.bos_token_id, "sep_token_id": tokenizer.sep_token_id,
        "eos_token_id": tokenizer.sep_token_id, "pad_token_id": tokenizer.pad_token_id,
    }
    if full_size:
        image_size = base.vision_config.image_size
        config = BlipConfig(text_config={**base.text_config.to_dict(), **ids},
                            vision_config=base.vision_config.to_dict())
    else:
        image_size = 32
        # initializer_range: BLIP's vision default (1e-10) makes every image look alike to a random
        # model, so every caption would be the same and batch-order mistakes would go unseen.
        text = {
            "vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "max_position_embeddings": 64, "projection_dim": 32, "initializer_range": 0.2,
            **ids,
        }
        vision = {
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
            "image_size": image_size, "patch_size": 8, "projection_dim": 32, "initializer_range": 0.2,
        }
        config = BlipConfig(text_config=text, vision_config=vision, projection_dim=32, image_text_hidden_size=32)
    torch.manual_seed(seed)
    BlipForConditionalGeneration(config).save_pretrained(directory)
    image_processor = BlipImageProcessorPil(size={"height": image_size, "width": image_size})
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


# A tiny multilingual vocabulary: BERT's specials, a few whole words, and every letter of several
# scripts alone and as a "##" continuation, so any word of these languages is tokenized (letter by
# letter at worst) instead of collapsing to [UNK].
TEXT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
TEXT_WORDS = ["a", "the", "cat", "dog", "red", "car", "gato", "perro", "rojo", "chat", "chien", "katze", "hund",
              "кошка", "собака", "猫", "狗"]
TEXT_LETTERS = (
    "abcdefghijklmnopqrstuvwxyz0123456789" + "áàâäãçéèêëíìîïñóòôöõúùûüßæøå"
    + "абвгдеёжзийклмнопрстуфхцчшщъыьэюя" + "αβγδεζηθικλμνξοπρστυφχψω" + "猫狗车車红紅花天空人"
    + "ابتثجحخدذرزسشصضطظعغفقكلمنهوية" + "あいうえおかきくけこねのは"
)


def build_text_model(
    directory: Path,
    *,
    dim: int = 16,
    hidden: int = 32,
    layers: int = 2,
    max_seq_length: int = 16,
    dense_weights: str = "safetensors",
    target: Sequence[float] | None = None,
    seed: int = 0,
) -> Path:
    """Save a random multilingual text model into ``directory``, in the layout of
    ``sentence-transformers/clip-ViT-B-32-multilingual-v1``: a DistilBERT at the root (config,
    safetensors weights, vocab.txt, tokenizer.json, the old-style tokenizer_config.json),
    ``sentence_bert_config.json``, ``modules.json``, mean pooling in ``1_Pooling`` and a
    bias-free Dense projection ``hidden -> dim`` with Identity activation in ``2_Dense``.

    ``dense_weights``: ``safetensors`` (``2_Dense/model.safetensors``, as the hub has it now) or
    ``bin`` (``2_Dense/pytorch_model.bin``, as the model was first published). ``target``: every
    text maps to this vector (zero weights plus this bias): a model whose answers a test knows.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    letters = list(dict.fromkeys(TEXT_LETTERS))
    tokens = list(TEXT_SPECIAL_TOKENS) + [w for w in TEXT_WORDS if w not in letters] + letters
    tokens += [f"##{c}" for c in letters]
    (directory / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    # transformers 5's BertTokenizer family takes the vocabulary itself; a vocab_file argument is ignored.
    tokenizer = DistilBertTokenizer(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True)
    tokenizer.save_pretrained(directory)
    # The real repository's files, written by transformers 4 / sentence-transformers 1: no
    # tokenizer_class, so transformers picks the tokenizer from config.json's model_type.
    specials = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                "mask_token": "[MASK]"}
    _write_json(directory / "special_tokens_map.json", specials)
    _write_json(directory / "tokenizer_config.json", {
        "do_lower_case": True, **specials, "tokenize_chinese_chars": True, "strip_accents": None,
        "model_max_length": 512, "special_tokens_map_file": None, "do_basic_tokenize": True, "never_split": None,
    })
    config = DistilBertConfig(vocab_size=len(tokens), dim=hidden, hidden_dim=2 * hidden, n_layers=layers, n_heads=2,
                              max_position_embeddings=64, pad_token_id=0)
    torch.manual_seed(seed)
    DistilBertModel(config).save_pretrained(directory)
    _write_json(directory / "sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False})
    _write_json(directory / "config_sentence_transformers.json",
                {"__version__": {"sentence_transformers": "1.0.4", "transformers": "4.7.0", "pytorch": "1.8.1"}})
    _write_json(directory / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
    ])
    (directory / "1_Pooling").mkdir(exist_ok=True)
    _write_json(directory / "1_Pooling" / "config.json", {
        "word_embedding_dimension": hidden, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
    })
    (directory / "2_Dense").mkdir(exist_ok=True)
    _write_json(directory / "2_Dense" / "config.json", {
        "in_features": hidden, "out_features": dim, "bias": target is not None,
        "activation_function": "torch.nn.modules.linear.Identity",
    })
    generator = torch.Generator().manual_seed(seed + 1)
    weights = {"linear.weight": torch.randn(dim, hidden, generator=generator) / hidden ** 0.5}
    if target is not None:
        weights = {"linear.weight": torch.zeros(dim, hidden), "linear.bias": torch.tensor(list(target)).float()}
    if dense_weights == "safetensors":
        save_file(weights, directory / "2_Dense" / "model.safetensors", metadata={"format": "pt"})
    else:
        torch.save(weights, directory / "2_Dense" / "pytorch_model.bin")
    return directory


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
