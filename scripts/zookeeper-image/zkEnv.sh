# zkEnv.sh of the zookeeper:3.8 image that scripts/docker-base-images.sh
# makes from Debian's `zookeeper` package. Debian's own zkEnv.sh hard-codes
# /etc/zookeeper/conf and has no logging backend on its class path; this one
# reads the official image's settings instead: the configuration in
# $ZOOCFGDIR (/conf), logs on the console (slf4j-simple, to stderr), so that
# `docker logs` shows them. zkServer.sh and zkCli.sh source it.
ZOOMAIN=org.apache.zookeeper.server.quorum.QuorumPeerMain
ZOOCFGDIR="${ZOOCFGDIR:-/conf}"
ZOOCFG="$ZOOCFGDIR/zoo.cfg"
ZOO_LOG_DIR="${ZOO_LOG_DIR:-/logs}"
JAVA=/usr/bin/java
CLASSPATH="$ZOOCFGDIR:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar"
# The CLI's log goes to the console too, and says only what matters.
CLIENT_JVMFLAGS="${CLIENT_JVMFLAGS:--Dorg.slf4j.simpleLogger.defaultLogLevel=warn}"
