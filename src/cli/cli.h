/* cli — subcommands of the caresync executable, one file each. Each takes
 * the arguments after its own name (argv[0] is the subcommand) and returns
 * the process exit status. */
#ifndef CARESYNC_CLI_H
#define CARESYNC_CLI_H

int cli_serve(int argc, char **argv);
int cli_admin(int argc, char **argv);
int cli_keygen(int argc, char **argv);
int cli_ledger(int argc, char **argv);
int cli_train(int argc, char **argv);
int cli_eval(int argc, char **argv);
int cli_surveil(int argc, char **argv);
int cli_demo(int argc, char **argv);

/* Log a warning for each part of a data directory (the directory, its
 * databases, keys/) whose mode is wider than 0700 (directories) or 0600
 * (files). Never fails: an existing directory is the operator's. */
void cli_data_dir_warn(const char *data_dir);

#endif
