/*
 * dbxhook: one program, one subcommand per role.  See README.md.
 */
#include "commands.h"

#include <stdio.h>
#include <string.h>

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"demo", demo_main,
     "run the cloud and the app together and convert a Markdown folder"},
    {"cloud", cloud_main,
     "serve the Dropbox-compatible file API, console and notifier"},
    {"console", console_main,
     "manage the cloud: accounts, apps, links, webhooks"},
    {"app", app_main, "serve the webhook receiver (and run workers)"},
    {"worker", worker_main, "process pending accounts from the state store"},
    {"appctl", appctl_main,
     "manage the app's state: account tokens, pending set, status"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: dbxhook <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'dbxhook <command> --help' describes each command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "dbxhook: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
