# A revledger worker image. Used by docker-compose.yml; configuration is all environment.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ledger ledger
COPY revenue revenue
COPY streams streams
COPY connectors connectors
COPY avro avro
RUN pip install --no-cache-dir .
ENV REVLEDGER_DATA_DIR=/var/lib/revledger \
    REVLEDGER_WEB_HOST=0.0.0.0
VOLUME ["/var/lib/revledger"]
EXPOSE 6066
ENTRYPOINT ["revledger"]
CMD ["worker"]
