/* sockit bench: a server's CPU time and memory, read from /proc (Linux).
 *
 * CPU counts the whole process tree: servers that fork a child per client (socat, ncat) spend
 * their time in the children. A live descendant counts its own time; one that has exited and
 * been reaped is already in its parent's cutime/cstime. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

typedef struct pstat {
    int pid, ppid;
    double self_s, children_s; /* utime+stime, cutime+cstime */
} pstat;

static bool read_stat(int pid, pstat *out)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    if (!p)
        return false;
    /* After ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
     * stime cutime cstime ... */
    char state;
    int ppid;
    unsigned long long ut, st;
    long long cut, cst;
    if (sscanf(p + 2, "%c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld", &state,
               &ppid, &ut, &st, &cut, &cst) != 6)
        return false;
    double tick = (double)sysconf(_SC_CLK_TCK);
    out->pid = pid;
    out->ppid = ppid;
    out->self_s = (double)(ut + st) / tick;
    out->children_s = (double)(cut + cst) / tick;
    return true;
}

static uint64_t read_rss_kib(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    uint64_t kib = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "VmRSS:", 6)) {
            kib = strtoull(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kib;
}

void proc_sample_take(int pid, proc_sample *out)
{
    memset(out, 0, sizeof *out);
    pstat root;
    if (pid <= 0 || !read_stat(pid, &root))
        return;
    out->ok = true;
    out->rss_kib = read_rss_kib(pid);
    out->cpu_s = root.self_s + root.children_s;
    /* Live descendants: collect every process's parent, then walk down from pid. */
    DIR *d = opendir("/proc");
    if (!d)
        return;
    pstat *all = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int p = atoi(e->d_name);
        if (p <= 0 || p == pid)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            pstat *grown = realloc(all, cap * sizeof *all);
            if (!grown)
                break;
            all = grown;
        }
        if (read_stat(p, &all[n]))
            n++;
    }
    closedir(d);
    /* Mark descendants by repeated passes (the tree is shallow); ppid -1 marks one counted. */
    int *family = malloc((n + 1) * sizeof *family);
    size_t fam = 0;
    if (family) {
        family[fam++] = pid;
        for (bool grew = true; grew;) {
            grew = false;
            for (size_t i = 0; i < n; i++) {
                if (all[i].ppid < 0)
                    continue;
                for (size_t j = 0; j < fam; j++) {
                    if (all[i].ppid == family[j]) {
                        out->cpu_s += all[i].self_s + all[i].children_s;
                        family[fam++] = all[i].pid;
                        all[i].ppid = -1;
                        grew = true;
                        break;
                    }
                }
            }
        }
    }
    free(family);
    free(all);
}
