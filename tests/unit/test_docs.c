/*
 * test_docs.c - the README's configuration table is the config table:
 * every row cfg_print_reference prints (variable, file key, default,
 * meaning) appears in README.md exactly, so the documentation cannot drift
 * from what the processes read.
 */
#include "cfg.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    cr_assert(fseek(f, 0, SEEK_END) == 0);
    long n = ftell(f);
    cr_assert(n > 0);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    cr_assert(s);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

Test(docs, readme_lists_every_setting_as_the_table_says)
{
    char *readme = slurp(CS_SOURCE_DIR "/README.md");
    char *ref = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&ref, &len);
    cr_assert(m);
    cfg_print_reference(m);
    fclose(m);
    int rows = 0, missing = 0;
    for (char *line = strtok(ref, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "| `", 3) != 0)
            continue;
        rows++;
        if (!strstr(readme, line)) {
            missing++;
            cr_log_error("README.md lacks: %s", line);
        }
    }
    cr_expect_gt(rows, 20, "the table has all its rows");
    cr_expect_eq(missing, 0,
                 "%d settings are missing or out of date in README.md "
                 "(callsync-worker --config-reference prints the table)",
                 missing);
    free(ref);
    free(readme);
}
