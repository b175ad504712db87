#!/usr/bin/env bash
# Entrypoint of the platform image under the Spark Operator (SparkApplication resources).
#
# Spark on Kubernetes starts the driver pod with `driver <spark-submit args>` and each executor
# pod with `executor`, passing the rest in SPARK_* variables. Spark's own images answer those with
# their /opt/entrypoint.sh; this image has Spark as the pip `pyspark` package (which carries the
# spark-kubernetes jar), so this script does the same two things with that installation.
# Anything else is run as given (`python -m serving`, `feast ...`).
set -euo pipefail

SPARK_HOME="${SPARK_HOME:-$(python -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')}"
export SPARK_HOME

case "${1:-}" in
  driver)
    shift
    exec "$SPARK_HOME/bin/spark-submit" \
      --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS:-0.0.0.0}" \
      --conf "spark.executorEnv.SPARK_DRIVER_POD_IP=${SPARK_DRIVER_BIND_ADDRESS:-}" \
      --deploy-mode client \
      "$@"
    ;;
  executor)
    shift
    : "${SPARK_DRIVER_URL:?set by Spark on Kubernetes}" "${SPARK_EXECUTOR_ID:?}" "${SPARK_APPLICATION_ID:?}"
    # Spark passes the executor's JVM options (its Java module --add-opens flags first, then
    # spark.executor.extraJavaOptions) as SPARK_JAVA_OPT_0..N: all of them, in order.
    readarray -t java_opts < <(env | grep '^SPARK_JAVA_OPT_' | sort -t_ -k4 -n | sed 's/^[^=]*=//')
    exec java \
      "-Xms${SPARK_EXECUTOR_MEMORY:-1g}" "-Xmx${SPARK_EXECUTOR_MEMORY:-1g}" \
      "${java_opts[@]}" \
      -Duser.timezone=UTC \
      -cp "$SPARK_HOME/conf:$SPARK_HOME/jars/*:${SPARK_CLASSPATH:+$SPARK_CLASSPATH:}${SPARK_EXTRA_CLASSPATH:-/usr/share/java/mariadb-java-client.jar}" \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "$SPARK_DRIVER_URL" \
      --executor-id "$SPARK_EXECUTOR_ID" \
      --cores "${SPARK_EXECUTOR_CORES:-1}" \
      --app-id "$SPARK_APPLICATION_ID" \
      --hostname "${SPARK_EXECUTOR_POD_IP:-$(hostname -i)}" \
      --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" \
      --podName "${SPARK_EXECUTOR_POD_NAME:-$(hostname)}" \
      "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
