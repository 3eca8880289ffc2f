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
# row was identical in all 69 columns that do not measure time or memory or name the folder, run or host
# (status, every test and validation metric and loss, counts, hyper-parameters; `config_json` differs only in
# the results folder). The command, at each commit:
#   python -m benchmark run --strategies all --dataset digits --model vit_tiny_patch16_224 --img-size 32
#     --model-arg patch_size=8 --model-arg depth=2 --model-arg embed_dim=64 --model-arg num_heads=4
#     --weights weights/glyph_vit_p8_d2_w64.safetensors --epochs 1 --warmup-epochs 0 --train-size 256
#     --seeds 0 --device cpu --results-dir DIR

EQUIVALENT: dict[str, tuple[str, ...]] = {
    "97c30b41442e": ("f60ce67ba24c",),  # adalora
    "550f698b7c59": ("4ea24ecf7be3",),  # adapter
    "8c8361a03a30": ("8af4cfde1885",),  # adaptformer
    "5438c9048792": ("7f0698425294",),  # attn_only
    "f24b45fc26d9": ("3d12ede9f9cb",),  # bitfit
    "9ad9f545e671": ("f6dd38bbd666",),  # boft
    "89ae1efd31a7": ("867c3ea56363",),  # c3a
    "884dc823bc16": ("1fdf04b465ed",),  # convpass
    "fc995f2aa395": ("691df69d3d2a",),  # delora
    "2aca39ba1c7d": ("a0297dd989c7",),  # difffit
    "c87b092e6005": ("5346a99a52d2",),  # dora
    "fd8750c3d124": ("c90631462676",),  # fact_tk
    "d9a791ab244e": ("23a822fb09e0",),  # fact_tt
    "42df58188cdb": ("e0e21992f7e8",),  # fourierft
    "61c71e5e4959": ("127a0ff6cfdc",),  # full
    "baeaa2794ded": ("c86dee84ac41",),  # glora
    "da554df03090": ("791d69b7d87d",),  # gralora
    "9e89577e5cdc": ("dfec6c4e0fd9",),  # hra
    "9ee790272318": ("c2a10a9efc04",),  # ia3
    "bf366764ced9": ("b6d64d885bb3",),  # last_k
    "ea593466d20f": ("648da9ac2431",),  # linear
    "8f48d7168d80": ("720d1436481e",),  # ln_tuning
    "d142a7807511": ("6499e49a10e8",),  # loha
    "3baaf867fa63": ("396f77475234",),  # lokr
    "ca07d39cc0b3": ("c3ab79ae5900",),  # lora
    "42a929a3fcc2": ("e8ef014b3f42",),  # lora_olora
    "e254673a56ae": ("e2c87a310fcd",),  # lora_pissa
    "97a320e91edb": ("6f9ed83bc947",),  # miss
    "24f22f4ce3a3": ("0d1426403a10",),  # mlp_only
    "fc4f0ae3f4aa": ("3cf460209e83",),  # norm
    "089bfccbead7": ("776acd80e93d",),  # oft
    "68cf2507f421": ("874cd02de423",),  # pfeiffer_adapter
    "4088c35f2e2b": ("47a8ea8dbb63",),  # randlora
    "749cf7744c95": ("cf1a3390c591",),  # repadapter
    "9ea1a84278b9": ("f5bad9472214",),  # road
    "89d49d87356e": ("610a3aa919d6",),  # scratch
    "60586abdadac": ("2881a83ce11f",),  # shira
    "34347cafc40d": ("0b56a4f6d6b3",),  # ssf
    "2f3dcca081ed": ("c3d7e774b2a3",),  # vblora
    "5875696c18ed": ("9e1469b11323",),  # vera
    "56b852639a4b": ("cba34cc4583d",),  # vpt_deep
    "59a6f457d8c4": ("47528d8966ea",),  # vpt_shallow
    "252c0554bc64": ("32a09e4c400e",),  # vqt
    "7ec495075e52": ("fc9467a88b4e",),  # waveft
}
