/* The commands of the `mvmoe` program. Each takes its own argv (argv[0] = the command name),
 * prints its results, and returns the process exit code (MVMOE_EXIT_*); main exits with it. */
#ifndef MVMOE_CLI_COMMANDS_H
#define MVMOE_CLI_COMMANDS_H

int mvmoe_cmd_train(int argc, char **argv);
int mvmoe_cmd_eval(int argc, char **argv);
int mvmoe_cmd_predict(int argc, char **argv);
int mvmoe_cmd_info(int argc, char **argv);
int mvmoe_cmd_presets(int argc, char **argv);
int mvmoe_cmd_superclasses(int argc, char **argv);
int mvmoe_cmd_bench(int argc, char **argv);
int mvmoe_cmd_report(int argc, char **argv);
int mvmoe_cmd_export(int argc, char **argv);
int mvmoe_cmd_quantize(int argc, char **argv);

#endif
