#include "config.h"

#include <string.h>

static const mlpf_config PRESETS[] = {
    {.preset = "hepscore22", .n_features = 12, .n_types = 3, .width = 512, .n_graph_id = 3,
     .n_graph_reg = 3, .bin_size = 640, .max_num_bins = 100, .dist_dim = 128, .dist_hidden = 128,
     .dist_mult = 0.1f, .head_hidden = 256, .n_classes = 6, .id_hidden_layers = 4,
     .ch_hidden_layers = 2, .reg_hidden_layers = 3, .ln_eps = 1e-3f, .lr = 1e-5f, .beta1 = 0.9f,
     .beta2 = 0.999f, .adam_eps = 1e-7f, .decay_rate = 0.99f, .decay_steps = 10000},
    {.preset = "tiny", .n_features = 12, .n_types = 3, .width = 32, .n_graph_id = 3,
     .n_graph_reg = 3, .bin_size = 16, .max_num_bins = 8, .dist_dim = 8, .dist_hidden = 8,
     .dist_mult = 0.1f, .head_hidden = 16, .n_classes = 6, .id_hidden_layers = 4,
     .ch_hidden_layers = 2, .reg_hidden_layers = 3, .ln_eps = 1e-3f, .lr = 1e-3f, .beta1 = 0.9f,
     .beta2 = 0.999f, .adam_eps = 1e-7f, .decay_rate = 0.99f, .decay_steps = 10000},
};

int mlpf_config_preset(const char *name, mlpf_config *cfg)
{
    for (size_t i = 0; i < sizeof PRESETS / sizeof PRESETS[0]; i++)
        if (strcmp(name, PRESETS[i].preset) == 0) {
            *cfg = PRESETS[i];
            return 0;
        }
    return -1;
}

const char *mlpf_config_preset_names(void) { return "hepscore22, tiny"; }
