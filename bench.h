/* bench.h - `./run bench`: bandwidth, kernel and decode measurements. */
#ifndef HEARTH_BENCH_H
#define HEARTH_BENCH_H

/* argv holds the options after "bench"; returns the process exit status. */
int bench_main(int argc, char **argv);

#endif
