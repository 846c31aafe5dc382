print("eventflow-loadgen")
