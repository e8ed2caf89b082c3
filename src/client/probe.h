/* `prescale probe`: talks to a running scaler exactly as KEDA does, over prescale's own gRPC client. */
#ifndef PS_PROBE_H
#define PS_PROBE_H

/* argv[0] is "probe". Returns the process exit status (0 ok, 1 failure, 2 usage). */
int ps_probe_main(int argc, char **argv);

#endif
