# Production image: daphne serving the ASGI app. Configure with the variables in .env.example.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY . .
# collectstatic needs settings but no secrets: a throwaway key for this one command.
RUN SECRET_KEY=collectstatic-only DEBUG=0 python manage.py collectstatic --noinput

RUN useradd --create-home aihub
USER aihub
EXPOSE 8000
CMD ["sh", "-c", "python manage.py migrate --noinput && python manage.py seed && daphne -b 0.0.0.0 -p 8000 --proxy-headers aihub.asgi:application"]
