/*
 * The subcommands of the dbxhook program.  Each takes the arguments after
 * its own name (argv[0] is the subcommand name) and returns the process
 * exit status: 0 success, 1 failure, 2 usage error.
 */
#ifndef DBX_COMMANDS_H
#define DBX_COMMANDS_H

int cloud_main(int argc, char **argv);   /* cloud/cloud_main.c */
int console_main(int argc, char **argv); /* tools/console_cli.c */
int app_main(int argc, char **argv);     /* app/app_main.c */
int worker_main(int argc, char **argv);  /* app/worker_main.c */
int appctl_main(int argc, char **argv);  /* app/appctl.c */
int demo_main(int argc, char **argv);    /* tools/demo.c */

#endif
