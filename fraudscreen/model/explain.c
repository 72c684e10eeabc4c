/* Per-feature contributions of a LightGBM forest for one row (Saabas / "tree path").
 *
 * Walking each tree once, every split on the path credits its feature with the change in
 * node value it caused; the credits plus the sum of root values equal the raw score
 * exactly. Costs about what a prediction costs, where LightGBM's TreeSHAP costs ~0.7 ms
 * through Python, which is why reason codes use this. Built by fraudscreen.model.compile
 * and checked against LightGBM's raw score at every load.
 */
#include <math.h>
#include <stdint.h>

typedef struct {
    int32_t n_trees;
    int32_t n_features;
    const int32_t *tree_root;      /* per tree: index of its root node in the node arrays */
    const int32_t *tree_leaf_base; /* per tree: index of its first leaf in leaf_value */
    const int32_t *split_feature;  /* per node */
    const double *threshold;       /* per node */
    const int8_t *missing_nan;     /* per node: 1 if missing values follow default_left */
    const int8_t *default_left;    /* per node */
    const int32_t *left;           /* per node: >= 0 node offset within tree, < 0 ~leaf */
    const int32_t *right;
    const double *node_value;      /* per node */
    const double *leaf_value;      /* per leaf */
} Forest;

/* out has n_features + 1 slots; the last one receives the bias (sum of root values). */
void forest_contributions(const Forest *f, const double *row, double *out) {
    for (int32_t i = 0; i <= f->n_features; ++i) out[i] = 0.0;
    for (int32_t t = 0; t < f->n_trees; ++t) {
        const int32_t base = f->tree_root[t];
        const int32_t leaf_base = f->tree_leaf_base[t];
        if (base < 0) { /* single-leaf tree */
            out[f->n_features] += f->leaf_value[leaf_base];
            continue;
        }
        int32_t node = 0;
        double value = f->node_value[base];
        out[f->n_features] += value;
        for (;;) {
            const int32_t k = base + node;
            const int32_t feature = f->split_feature[k];
            double x = row[feature];
            int go_left;
            if (isnan(x)) {
                if (f->missing_nan[k]) {
                    go_left = f->default_left[k];
                } else {
                    x = 0.0;
                    go_left = x <= f->threshold[k];
                }
            } else {
                go_left = x <= f->threshold[k];
            }
            const int32_t next = go_left ? f->left[k] : f->right[k];
            const double next_value =
                next < 0 ? f->leaf_value[leaf_base + ~next] : f->node_value[base + next];
            out[feature] += next_value - value;
            if (next < 0) break;
            node = next;
            value = next_value;
        }
    }
}
