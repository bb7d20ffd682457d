"""Tiny stand-in for `config_molmo.py` of allenai/Molmo-7B-D-0924 (Molmo v1, remote code).

Written for this project from the public interface (class names, config fields, auto_map), not
copied. It exists so that tests exercise our trust_remote_code loading and adapter against the
same class names, inputs and output structure; it does not reproduce Molmo's numerics. The real
model hard-codes its vision tower in `MolmoForCausalLM.__init__`; here the few vision sizes are
config fields so the twin can be tiny.
"""

from transformers import PretrainedConfig


class MolmoConfig(PretrainedConfig):
    model_type = "molmo"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(self, vocab_size=50304, embedding_size=50304, hidden_size=4096, intermediate_size=11008,
                 num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=None, max_position_embeddings=2048,
                 initializer_range=0.02, use_cache=True, layer_norm_eps=1e-5, rope_theta=10000.0, qkv_bias=False,
                 weight_tying=False, use_position_ids=True, additional_vocab_size=128, image_patch_size=14,
                 image_size=336, image_emb_dim=1024, image_pooling=2, **kwargs):
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads or num_attention_heads
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.use_cache = use_cache
        self.layer_norm_eps = layer_norm_eps
        self.rope_theta = rope_theta
        self.qkv_bias = qkv_bias
        self.weight_tying = weight_tying
        self.use_position_ids = use_position_ids
        self.additional_vocab_size = additional_vocab_size
        self.image_patch_size = image_patch_size
        self.image_size = image_size
        self.image_emb_dim = image_emb_dim
        self.image_pooling = image_pooling
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)


MolmoConfig.register_for_auto_class()
