"""The forecasting study (see sphere_plugin/cli/forecast_study.py, README "Forecasting study").

    python tools/forecast_study.py --gin_file=gin/forecast_study.gin --output_dir=runs/study
"""

from sphere_plugin.cli import forecast_study

if __name__ == '__main__':
  forecast_study.run()
