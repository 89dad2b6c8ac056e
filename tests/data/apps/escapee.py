# A worker that starts a child which leaves its process group (setsid), writes the child's pid
# to the file named in argv[1], then sleeps: what a careless app that daemonizes a helper does.
import os
import sys
import time

child = os.fork()
if child == 0:
    os.setsid()
    time.sleep(3600)
    os._exit(0)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(child))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(3600)
