/* parser_bench.c - the page parser alone: ns_page_parse() on one page file,
 * repeated, timed with CLOCK_PROCESS_CPUTIME_ID. Run by `make bench-parser`
 * (tests/bench/parser.py makes the pages).
 *
 *     build/parser_bench PAGE.json REPEATS
 *
 * Prints one line: records, MB/s of page text, microseconds per record. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "daemon/records.h"

static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: parser_bench PAGE.json REPEATS\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    buf page;
    buf_init(&page, 0);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (buf_append(&page, chunk, n) < 0)
            return 2;
    fclose(f);
    int repeats = atoi(argv[2]);
    ns_page pg;
    char err[256];
    ns_page_init(&pg, 0);
    double t0 = cpu_seconds();
    for (int i = 0; i < repeats; i++)
        if (ns_page_parse(&pg, page.data, page.len, err, sizeof err) < 0) {
            fprintf(stderr, "%s: %s\n", argv[1], err);
            return 1;
        }
    double s = cpu_seconds() - t0;
    printf("records %zu MB/s %.1f us_per_record %.2f\n", pg.nrecs,
           (double)page.len * repeats / s / 1e6, s / repeats / (double)pg.nrecs * 1e6);
    ns_page_release(&pg);
    buf_release(&page);
    return 0;
}
