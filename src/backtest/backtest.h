/* `prescale backtest`: walk-forward replay of a trace through the forecasting engine and an HPA model. */
#ifndef PS_BACKTEST_H
#define PS_BACKTEST_H

/* argv[0] is "backtest". Returns the process exit status (0 ok, 1 failure, 2 usage). */
int ps_backtest_main(int argc, char **argv);

#endif
