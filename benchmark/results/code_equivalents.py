"""Older code versions that train the same numbers as the current ones, so that results written before a
change that moved code without changing what it computes stay current (`identity.canonical`).

`code_version` hashes module names and syntax trees: moving `benchmark/runner.py` to
`benchmark/train/runner.py`, or renaming an imported module, changes every hash while every trained number
stays the same. An entry here says so, for one current version: `{current: (older, ...)}`. Entries are added
only with evidence that the numbers are equal: the same cells run at both commits on one machine give
bit-identical rows (the evidence for each entry is named above it). An entry whose current version is no
longer current does nothing; it can be removed.
"""

# Evidence for the entries below: commit 0ecdbf4 (before benchmark/ was split into subpackages) and this
# commit ran the same 44 cells (every strategy; digits, 256 training images, 1 epoch, seed 0; the demo's tiny
# ViT on the shipped backbone; CPU; one machine: AMD EPYC, torch 2.14.1, timm 1.0.31, peft 0.21.2). Every
# row was identical in all 70 columns that do not measure time or memory or name the folder, run or host
# (status, every test and validation metric and loss, counts, hyper-parameters). The command, at each commit:
#   python -m benchmark run --strategies all --dataset digits --model vit_tiny_patch16_224 --img-size 32
#     --model-arg patch_size=8 --model-arg depth=2 --model-arg embed_dim=64 --model-arg num_heads=4
#     --weights weights/glyph_vit_p8_d2_w64.safetensors --epochs 1 --warmup-epochs 0 --train-size 256
#     --seeds 0 --device cpu --results-dir DIR
EQUIVALENT: dict[str, tuple[str, ...]] = {
    "c0eff0b4066a": ("f60ce67ba24c",),  # adalora
    "57a20dcb9c34": ("4ea24ecf7be3",),  # adapter
    "d2626f9d46d8": ("8af4cfde1885",),  # adaptformer
    "ab1f44757a0d": ("7f0698425294",),  # attn_only
    "23a10826cadc": ("3d12ede9f9cb",),  # bitfit
    "a64bdc4db911": ("f6dd38bbd666",),  # boft
    "e9923f930cf3": ("867c3ea56363",),  # c3a
    "6bc6b15ab48f": ("1fdf04b465ed",),  # convpass
    "a69b7d6dd520": ("691df69d3d2a",),  # delora
    "32cc74aa4fa3": ("a0297dd989c7",),  # difffit
    "5072c864c085": ("5346a99a52d2",),  # dora
    "31239cd446a7": ("c90631462676",),  # fact_tk
    "d6a969931922": ("23a822fb09e0",),  # fact_tt
    "106550bd0f9b": ("e0e21992f7e8",),  # fourierft
    "75a439b90d27": ("127a0ff6cfdc",),  # full
    "6e690c1728d3": ("c86dee84ac41",),  # glora
    "3cf4a8432f58": ("791d69b7d87d",),  # gralora
    "112beacd59eb": ("dfec6c4e0fd9",),  # hra
    "5f786506e319": ("c2a10a9efc04",),  # ia3
    "926bd965d169": ("b6d64d885bb3",),  # last_k
    "16c22b3a9684": ("648da9ac2431",),  # linear
    "0e9da09ad01b": ("720d1436481e",),  # ln_tuning
    "a26a4a1097b6": ("6499e49a10e8",),  # loha
    "2617738513c3": ("396f77475234",),  # lokr
    "bfa69247608b": ("c3ab79ae5900",),  # lora
    "b11f3fd7ed04": ("e8ef014b3f42",),  # lora_olora
    "f2fc783e3769": ("e2c87a310fcd",),  # lora_pissa
    "3387743dce68": ("6f9ed83bc947",),  # miss
    "5ebfbeee68b2": ("0d1426403a10",),  # mlp_only
    "56b4624f9400": ("3cf460209e83",),  # norm
    "5f19b1b5efeb": ("776acd80e93d",),  # oft
    "0a5c63e2765b": ("874cd02de423",),  # pfeiffer_adapter
    "129898982aa5": ("47a8ea8dbb63",),  # randlora
    "5ae1e470d6d7": ("cf1a3390c591",),  # repadapter
    "62be85783f20": ("f5bad9472214",),  # road
    "9c0edc26eea6": ("610a3aa919d6",),  # scratch
    "efff7c9eb2bd": ("2881a83ce11f",),  # shira
    "7f035d18d015": ("0b56a4f6d6b3",),  # ssf
    "9f0df914da8c": ("c3d7e774b2a3",),  # vblora
    "ea5dd6b15f58": ("9e1469b11323",),  # vera
    "ca072a88c908": ("cba34cc4583d",),  # vpt_deep
    "9bb941ec6705": ("47528d8966ea",),  # vpt_shallow
    "7c064a86763a": ("32a09e4c400e",),  # vqt
    "0e1c02bced2f": ("fc9467a88b4e",),  # waveft
}
